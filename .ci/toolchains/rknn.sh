#!/usr/bin/env bash
# Rockchip RKNN-Toolkit2 (its x86 simulator of the RK3588 NPU) for deconv2sub's `rknn` runner, in a
# venv of its own (idempotent):
#   .ci/toolchains/rknn.sh [VENV]        (default /tmp/tc-rknn)
# then: export DECONV2SUB_RKNN_PYTHON=VENV/bin/python  (pytest tests/toolchains/test_toolchain_rknn.py from any
# venv), or run VENV/bin/python -m pytest tests/toolchains/test_toolchain_rknn.py directly.
#
# rknn-toolkit2 2.5.0 (cp38-cp312 wheels) pins numpy <= 1.26.4, onnx <= 1.18.0, protobuf <= 4.25.4
# and torch <= 2.4.0, which conflict with the project's venv (numpy 2, onnx 1.23, torch 2.13): it is
# installed --no-deps, with its other Requires-Dist (wheel METADATA) spelled out below. torch is not
# used to load or build an ONNX model, but rknn/api imports it at top level, so some torch must be
# there: torch 2.13.0 (the project's CPU pin) imports and works (measured), against the <= 2.4 pin.
# torch 2.13 needs setuptools >= 77.0.3; the toolkit needs setuptools < 81 (pkg_resources).
# deconv2sub is not pip-installed here (it would pull onnxruntime-gpu beside onnxruntime): the
# worker runs this checkout from PYTHONPATH, so only its light dependencies are added.
# pip then reports the torch conflict ("rknn-toolkit2 2.5.0 requires torch<=2.4.0"): expected.
# torch comes as the CPU build where pip finds one (this machine's wheel directory); a plain index
# would bring its CUDA build.
# Measured (2 shared cores, loaded): fresh ~2 min with a warm pip cache, venv 1.6 GB.
set -euo pipefail
VENV="${1:-/tmp/tc-rknn}"
PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
CHECK='import rknn.api, importlib.metadata as m; print("rknn-toolkit2", m.version("rknn-toolkit2"))'

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$CHECK" 2>/dev/null; then
  echo "rknn toolchain present in $VENV"
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q --no-deps "rknn-toolkit2==2.5.0"
"$VENV/bin/python" -m pip install -q \
  "protobuf>=4.21.6,<=4.25.4" "psutil>=5.9.0" "ruamel.yaml>=0.17.21" "scipy>=1.9.3" \
  "tqdm>=4.64.1" "opencv-python>=4.5.5.64" "fast-histogram>=0.11" "numpy<=1.26.4" \
  "onnx>=1.16.1,<=1.18.0" "onnxruntime>=1.17.0" \
  "torch==2.13.0" "setuptools>=77.0.3,<81" \
  "onnx-graphsurgeon>=0.5" "click>=8.0" pytest
"$VENV/bin/python" -c "$CHECK"
echo "rknn toolchain installed in $VENV: export DECONV2SUB_RKNN_PYTHON=$VENV/bin/python"
