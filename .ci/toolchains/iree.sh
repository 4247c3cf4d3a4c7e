#!/usr/bin/env bash
# Install IREE (compiler with iree-import-onnx, runtime) and deconv2sub into a venv (idempotent).
#   .ci/toolchains/iree.sh VENV       e.g. /tmp/tc-iree
# then: DECONV2SUB_IREE_PYTHON=VENV/bin/python pytest tests/toolchains/test_toolchain_iree.py (from any venv),
# or run VENV/bin/python -m pytest tests/toolchains/test_toolchain_iree.py directly.
# Measured (2 shared cores, loaded): fresh ~57 s for IREE + ~30 s for the project, venv 0.97 GB;
# a re-run on an existing venv ~85 s (pip cache).
# iree-base-compiler/-runtime 3.13 pin nothing that conflicts with the project (numpy 2.4, onnx
# 1.23, ORT); iree-import-onnx needs onnx, which the project has.
set -euo pipefail
VENV=${1:?usage: $0 VENV}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "iree-base-compiler==3.13.0" "iree-base-runtime==3.13.0" pytest
"$VENV/bin/python" -m pip install -q -e "$REPO"
"$VENV/bin/python" -c "import iree.compiler, iree.runtime; print('iree ok')"
"$VENV/bin/python" -m pip show iree-base-compiler | grep ^Version
