#!/bin/bash
# Install the ncnn toolchain (pnnx converter + ncnn runtime, from PyPI) into a venv; idempotent.
#   .ci/toolchains/ncnn.sh [VENV]        (default: .venv, the venv .ci/run creates)
# pnnx's Python side declares torch (any version): --no-deps keeps pip from pulling a torch
# (a multi-GB CUDA build) beside the project's pinned CPU one; its converter is a native binary.
set -euo pipefail
VENV="${1:-.venv}"
PNNX=20261020
NCNN=1.0.20261020
have() { "$VENV/bin/python" - "$@" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    ok = version("pnnx") == sys.argv[1] and version("ncnn") == sys.argv[2]
except PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PY
}
if have "$PNNX" "$NCNN"; then
    echo "ncnn toolchain already in $VENV (pnnx $PNNX, ncnn $NCNN)"
    exit 0
fi
"$VENV/bin/pip" install -q --no-deps "pnnx==$PNNX"
"$VENV/bin/pip" install -q "ncnn==$NCNN"   # + portalocker, requests, tqdm
"$VENV/bin/python" -c 'import ncnn'      # the wheel loads on this machine
echo "ncnn toolchain installed in $VENV (pnnx $PNNX, ncnn $NCNN)"
