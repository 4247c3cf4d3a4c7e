#!/usr/bin/env bash
# Install Apache TVM (Relax ONNX frontend) and deconv2sub into a venv of its own (idempotent).
#   .ci/toolchains/tvm.sh VENV        e.g. /tmp/tc-tvm
# then: DECONV2SUB_TVM_PYTHON=VENV/bin/python pytest tests/test_toolchain_tvm.py (from any venv),
# or run VENV/bin/python -m pytest tests/test_toolchain_tvm.py directly.
# Measured (2 shared cores, loaded): fresh ~45 s for apache-tvm + ~30 s for the project, venv
# 0.8 GB; a re-run on an existing venv ~80 s (pip cache).
# apache-tvm 0.27 pins nothing that conflicts with the project (numpy 2.4, onnx 1.23, ORT): it can
# also go into the project's own venv (pip install apache-tvm).
set -euo pipefail
VENV=${1:?usage: $0 VENV}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "apache-tvm==0.27.0.post1" pytest
"$VENV/bin/python" -m pip install -q -e "$REPO"
"$VENV/bin/python" -c "import tvm; from tvm.relax.frontend.onnx import from_onnx; print('tvm', tvm.__version__)"
