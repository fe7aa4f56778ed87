#!/usr/bin/env bash
# GPU check for the gpu backend (issue 6), on a machine with an NVIDIA GPU.
#
# Makes a venv (.cache/gpu-venv) with the [gpu] extra, onnxruntime-gpu (never beside the
# CPU onnxruntime: the two overwrite each other's files), and runs benchmarks/gpu_check.py.
# Without network access (the lent H200 machine) the wheels come as the parts that
# benchmarks/gpu_stage.py writes to .cache/gpu-wheels/parts/, one carried per `run` call
# (benchmarks/README.md, "GPU (issue 6)"); with no parts anywhere it installs from the
# network instead.
#
#   benchmarks/gpu_check.sh --receive   check the GPU, verify the parts that arrived, keep them
#                                       in $GPU_SPOOL and say which are still missing
#   benchmarks/gpu_check.sh [ARGS]      reassemble and verify the parts, install with --no-index,
#                                       run gpu_check.py ARGS (bounded: 7 minutes for the check)
#   benchmarks/gpu_check.sh --no-gpu    the same without a GPU, to test the install: no
#                                       nvidia-smi check, gpu_check.py on the cpu backend only
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV="${GPU_VENV:-.cache/gpu-venv}"
PARTS=.cache/gpu-wheels/parts
SPOOL="${GPU_SPOOL:-/tmp/bwserve-gpu-parts}"      # outside the tree, so a later call's copy cannot touch it
PAYLOAD="${GPU_PAYLOAD:-/tmp/bwserve-gpu-payload}"
PYTHON="${GPU_PYTHON:-python3}"
mode=check
case "${1:-}" in
    --receive) mode=receive; shift ;;
    --no-gpu) mode=no-gpu; shift ;;
esac

die() { echo "gpu_check: $*" >&2; exit 1; }

check_gpu() {
    command -v nvidia-smi >/dev/null || die "no NVIDIA GPU here: nvidia-smi is not on the PATH"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
        || die "no NVIDIA GPU here: nvidia-smi failed"
}

# Verified parts are copied to $SPOOL; prints the names still missing (none: all there).
receive() {
    mkdir -p "$SPOOL"
    if [ -f "$PARTS/SHA256SUMS" ]; then
        if [ -f "$SPOOL/SHA256SUMS" ] && ! cmp -s "$PARTS/SHA256SUMS" "$SPOOL/SHA256SUMS"; then
            echo "parts of another staging in $SPOOL: dropped" >&2
            rm -f "$SPOOL"/payload.tar*
        fi
        cp "$PARTS/SHA256SUMS" "$SPOOL/SHA256SUMS"
        for part in "$PARTS"/payload.tar.[0-9][0-9]; do
            [ -e "$part" ] && [ ! -e "$SPOOL/${part##*/}" ] || continue
            (cd "$PARTS" && grep " ${part##*/}\$" SHA256SUMS | sha256sum -c --quiet -) \
                || die "${part##*/} arrived corrupt (sha256 differs): carry it again"
            cp "$part" "$SPOOL/${part##*/}.tmp" && mv "$SPOOL/${part##*/}.tmp" "$SPOOL/${part##*/}"
        done
    fi
    [ -f "$SPOOL/SHA256SUMS" ] || return 0
    local name missing=()
    for name in $(awk '$2 ~ /^payload\.tar\.[0-9]+$/ {print $2}' "$SPOOL/SHA256SUMS"); do
        [ -e "$SPOOL/$name" ] || missing+=("$name")
    done
    echo "${missing[*]}"
}

# Reassembles the parts in $SPOOL into $PAYLOAD, each step checked against its sha256.
unpack() {
    (cd "$SPOOL" && cat payload.tar.[0-9][0-9] > payload.tar \
        && grep ' payload.tar$' SHA256SUMS | sha256sum -c --quiet -) \
        || die "the reassembled payload.tar does not match its sha256"
    rm -rf "$PAYLOAD" && mkdir -p "$PAYLOAD"
    tar -xf "$SPOOL/payload.tar" -C "$PAYLOAD"
    rm -f "$SPOOL/payload.tar"
    (cd "$PAYLOAD" && sha256sum -c --quiet SHA256SUMS) || die "a file in the payload does not match its sha256"
    local want have
    want=$(awk '$1 == "python" {print $2}' "$PAYLOAD/MANIFEST.txt")
    have=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [ "$want" = "$have" ] || die "the wheels are for python $want and $PYTHON is $have: set GPU_PYTHON"
}

install_offline() {
    rm -rf "$VENV"
    "$PYTHON" -m venv --without-pip "$VENV"   # no ensurepip needed: pip runs from its own wheel
    local pip_wheel=("$PAYLOAD"/wheels/pip-*.whl)
    PIP_CONFIG_FILE=/dev/null "$VENV/bin/python" "${pip_wheel[0]}/pip" install --quiet --no-index \
        --no-deps --no-compile --disable-pip-version-check "$PAYLOAD"/wheels/*.whl
}

install_online() {
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q -e '.[gpu]'
}

# onnxruntime-gpu's preload_dlls looks for CUDA 13 and cuDNN (nvidia/cu13, nvidia/cudnn) in its
# own site-packages, then on the default library path: add the image's copies, which its
# python3 holds, and the toolkit's.
cuda_library_path() {
    local site dir dirs=()
    for site in $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
        for dir in "$site"/nvidia/*/lib; do [ -d "$dir" ] && dirs+=("$dir"); done
    done
    [ -d /usr/local/cuda/lib64 ] && dirs+=(/usr/local/cuda/lib64)
    local IFS=:
    echo "${dirs[*]}"
}

# Where each library onnxruntime-gpu 1.31 (CUDA 13) loads is found: the first call's early warning.
cuda_libraries_report() {
    local lib dir where
    for lib in libcudart.so.13 libcublasLt.so.13 libcublas.so.13 libcufft.so.12 libcurand.so.10 \
               libnvrtc.so.13 libcudnn.so.9 libnvinfer.so.10; do
        where=$(ldconfig -p 2>/dev/null | awk -v l="$lib" '$1 == l {print $NF; exit}')
        local IFS=:
        for dir in $1; do [ -z "$where" ] && [ -e "$dir/$lib" ] && where="$dir/$lib"; done
        echo "  $lib: ${where:-not found}"
    done
}

if [ "$mode" != no-gpu ]; then check_gpu; fi
missing=$(receive)
if [ "$mode" = receive ]; then
    [ -f "$SPOOL/SHA256SUMS" ] || die "no parts: nothing under $PARTS (run benchmarks/gpu_stage.py here and carry them)"
    echo "parts in $SPOOL: $(cd "$SPOOL" && ls payload.tar.[0-9][0-9] 2>/dev/null | tr '\n' ' ')"
    echo "missing: ${missing:-none}"
    echo "$PYTHON: $("$PYTHON" --version 2>&1); CUDA library folders: $(cuda_library_path)"
    cuda_libraries_report "$(cuda_library_path)"
    exit 0
fi

if [ ! -f "$VENV/.installed" ]; then
    if [ -f "$SPOOL/SHA256SUMS" ]; then
        [ -z "$missing" ] || die "parts still missing: $missing (carry them first)"
        started=$SECONDS
        unpack
        install_offline
        echo "installed from $(ls "$PAYLOAD"/wheels | wc -l) wheels in $((SECONDS - started)) s"
    else
        install_online
    fi
    touch "$VENV/.installed"
fi
args=("$@")
[ -f "$PAYLOAD/models/cntk_mnist.onnx" ] && args=(--mnist "$PAYLOAD/models/cntk_mnist.onnx" "${args[@]}")
[ "$mode" = no-gpu ] && args+=(--backends cpu)
library_path=$(cuda_library_path)
export LD_LIBRARY_PATH="$library_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
preload=$([ "$mode" = no-gpu ] || echo "o.preload_dlls(); ")  # prints each CUDA library it cannot load
"$VENV/bin/python" -c "import onnxruntime as o; ${preload}print('onnxruntime', o.__version__, o.get_available_providers())"
timeout 420 "$VENV/bin/python" benchmarks/gpu_check.py "${args[@]}"
