"""Runtimes: run a model and time it.

* :mod:`.runners`: one :class:`~.runners.Runner` per runtime (ONNX Runtime with the CUDA provider
  and its reported CPU fallback, OpenVINO CPU, the deployment toolchains of
  :mod:`deconv2sub.toolchains`), created by :func:`~.runners.create_runner`.
* :mod:`.timing`: the one timing loop, shared by ``deconv2sub bench`` and the measured chooser
  (:mod:`deconv2sub.targets.autotune`).
"""
