#!/usr/bin/env bash
# Create .cache/kserve-venv with KServe's Python ModelServer and onnxruntime, for
# benchmarks/serving.py. A separate venv because kserve pins fastapi, uvicorn,
# protobuf and grpcio ranges of its own that may clash with ours. Idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.cache/kserve-venv"
KSERVE_VERSION="${KSERVE_VERSION:-0.21.*}"

if [ ! -x "$VENV/bin/python" ]; then
    python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import kserve, onnxruntime" 2>/dev/null; then
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet "kserve==$KSERVE_VERSION" onnxruntime numpy
fi
"$VENV/bin/python" -c "import importlib.metadata as m; print('kserve', m.version('kserve'), 'onnxruntime', m.version('onnxruntime'))"
