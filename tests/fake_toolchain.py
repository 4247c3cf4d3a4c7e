"""A stand-in toolchain for tests of :mod:`deconv2sub.toolchains.worker` (no real toolchain needed).

``compile_here`` "compiles" any path: its Compiled doubles input ``X`` into output ``Y``; a path
ending in ``bad.onnx`` fails like a converter would, with chatter on stdout first; one ending in
``slow.onnx`` sleeps ``SLOW_S`` seconds in each run.
"""

from __future__ import annotations

import time

import numpy as np

from deconv2sub.toolchains import Compiled, ToolchainError


def unavailable_reason():
    """None: the stand-in is always available."""
    return None


#: seconds each run of a ``*slow.onnx`` model sleeps
SLOW_S = 0.02


class _Doubler(Compiled):
    input_names = ["X"]
    output_names = ["Y"]

    def __init__(self, artifacts, sleep_s=0.0):
        self.artifacts = artifacts
        self.sleep_s = sleep_s

    def run(self, feeds):
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return {"Y": np.asarray(feeds["X"]) * 2}


def compile_here(model_path, input_shapes, workdir):
    """A doubler for any path but ``*bad.onnx``, which raises like a converter would."""
    print("converter chatter that must not reach the protocol")
    if model_path.endswith("bad.onnx"):
        raise ToolchainError("fake: unsupported op Foo\nsecond line of detail")
    return _Doubler([model_path, str(input_shapes)],
                    SLOW_S if model_path.endswith("slow.onnx") else 0.0)
