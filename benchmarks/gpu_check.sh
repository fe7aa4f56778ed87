#!/usr/bin/env bash
# GPU check for the gpu backend (issue 6), on a machine with an NVIDIA GPU.
#
# Makes a venv beside the project with the [gpu] extra (onnxruntime-gpu in place
# of onnxruntime: the two must not be installed together), then runs
# benchmarks/gpu_check.py. Without network access (the lent device machine),
# put the wheels it needs in .whl/ (see benchmarks/README.md, "GPU") and they
# are installed from there. Bounded: about 5 minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${GPU_VENV:-.cache/gpu-venv}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || {
    echo "no NVIDIA GPU here (nvidia-smi failed)"; exit 1; }
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv --system-site-packages "$VENV"
    if [ -d .whl ]; then
        "$VENV/bin/pip" install -q --no-index --find-links .whl --no-deps .whl/*.whl
        "$VENV/bin/pip" install -q --no-index --no-deps --no-build-isolation -e .
    else
        "$VENV/bin/pip" install -q -e .
        "$VENV/bin/pip" uninstall -q -y onnxruntime
        "$VENV/bin/pip" install -q 'onnxruntime-gpu[cuda,cudnn]'
    fi
fi
"$VENV/bin/python" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
timeout 420 "$VENV/bin/python" benchmarks/gpu_check.py "$@"
