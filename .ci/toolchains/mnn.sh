#!/bin/bash
# Install the MNN toolchain (converter + runtime in one PyPI wheel) into a venv; idempotent.
#   .ci/toolchains/mnn.sh [VENV]        (default: .venv, the venv .ci/run creates)
# deconv2sub calls the converter as the native _tools.mnnconvert, never the `mnnconvert` script
# (its telemetry logger pip-installs a package at run time).
set -euo pipefail
VENV="${1:-.venv}"
MNN=3.6.1
if "$VENV/bin/python" -c "from importlib.metadata import version as v; \
import sys; sys.exit(0 if v('MNN') == '$MNN' else 1)" 2>/dev/null; then
    echo "MNN toolchain already in $VENV (MNN $MNN)"
    exit 0
fi
"$VENV/bin/pip" install -q "MNN==$MNN"   # needs only numpy
echo "MNN toolchain installed in $VENV (MNN $MNN)"
