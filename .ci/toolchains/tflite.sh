#!/usr/bin/env bash
# LiteRT (TFLite) toolchain for deconv2sub's `tflite` runner, in its own venv:
#   .ci/toolchains/tflite.sh [VENV]        (default /tmp/tc-tflite; idempotent)
# then: export DECONV2SUB_TFLITE_PYTHON=VENV/bin/python
#
# onnx2tf 2.x needs Python >= 3.12; 1.29.24 (the last 1.x) runs on 3.11 (measured) and 3.10.12+. It pins its
# whole stack exactly (tensorflow 2.19.0, tf-keras 2.19.0, onnx 1.19.1, onnxruntime 1.23.0,
# onnxsim 0.4.36, ai-edge-litert 2.1.0, numpy 1.26.4, protobuf 4.25.5), which conflicts with the
# project's venv (numpy 2, onnx 1.23, onnxruntime-gpu): deconv2sub itself is NOT installed here;
# the runner starts deconv2sub/toolchains/tflite_worker.py (numpy + these packages only) in it.
# Measured: ~2.5 min from a PyPI mirror, 3.0 GB.
set -euo pipefail
VENV="${1:-/tmp/tc-tflite}"
PYTHON="${PYTHON:-python3}"
REQ="onnx2tf==1.29.24"
CHECK='import importlib.util as u, sys
mods = ("onnx2tf", "tensorflow", "tf_keras", "ai_edge_litert", "onnxruntime", "onnxsim")
sys.exit(1 if [m for m in mods if u.find_spec(m) is None] else 0)'

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "$CHECK" 2>/dev/null \
    && [ -x "$VENV/bin/onnxsim" ]; then
  echo "tflite toolchain present in $VENV"
  exit 0
fi
"$PYTHON" - <<'PY'
import sys
if sys.version_info[:3] < (3, 10, 12):
    sys.exit(f"onnx2tf 1.29 needs Python >= 3.10.12, got {sys.version.split()[0]}")
PY
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -U pip
"$VENV/bin/python" -m pip install -q "$REQ"
"$VENV/bin/python" -c "$CHECK"
"$VENV/bin/python" -m pip check
echo "tflite toolchain installed in $VENV: export DECONV2SUB_TFLITE_PYTHON=$VENV/bin/python"
