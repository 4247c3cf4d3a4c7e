"""Runtimes: run a model and time it.

* :mod:`.base`: :class:`~.base.Runner` (one loaded model), :class:`~.base.RuntimeInfo` (where it
  really runs), the model as a runtime takes it (bytes, or a file beyond 2 GiB).
* :mod:`.ort`: ONNX Runtime, with the CUDA provider and its reported CPU fallback.
* :mod:`.openvino`: OpenVINO on CPU.
* :mod:`.toolchain`: the deployment toolchains of :mod:`deconv2sub.toolchains` as runners.
* :mod:`.runners`: the runtimes by name, and :func:`~.runners.create_runner`.
* :mod:`.timing`: the one timing loop, shared by ``deconv2sub bench`` and the measured chooser
  (:mod:`deconv2sub.targets.autotune`).
"""
