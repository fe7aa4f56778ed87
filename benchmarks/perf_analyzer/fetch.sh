#!/usr/bin/env bash
# Fetch Triton's perf_analyzer and the two shared libraries it needs into
# .cache/perf_analyzer/, and write .cache/perf_analyzer/run, a wrapper that sets
# LD_LIBRARY_PATH. Idempotent: each piece is fetched only if missing.
#
# Why this way (see DESIGN.md, "Triton's perf_analyzer against our server"):
# PyPI `perf-analyzer` resolves to a 0.1.0 placeholder on Debian 12 (its real
# wheels need glibc 2.38), but the binary inside the tritonclient 2.51.0 wheel
# runs here given libb64.so.0d (Debian libb64-0d) and libcudart.so.12 (PyPI
# nvidia-cuda-runtime-cu12; loaded even for gRPC-only use, no GPU needed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="$ROOT/.cache/perf_analyzer"
LIB="$DEST/lib"
PIP="${PIP:-$ROOT/.venv/bin/pip}"
[ -x "$PIP" ] || PIP="python3 -m pip"
TRITONCLIENT_VERSION=2.51.0

mkdir -p "$LIB"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

if [ ! -x "$DEST/perf_analyzer" ]; then
    $PIP download --quiet --no-deps --only-binary=:all: --dest "$WORK" \
        "tritonclient==$TRITONCLIENT_VERSION"
    unzip -q -o -j "$WORK"/tritonclient-"$TRITONCLIENT_VERSION"-*.whl \
        "tritonclient-$TRITONCLIENT_VERSION.data/data/bin/perf_analyzer" -d "$WORK/bin"
    install -m 0755 "$WORK/bin/perf_analyzer" "$DEST/perf_analyzer"
fi

if [ ! -e "$LIB/libb64.so.0d" ]; then
    # apt-get download needs a package list; refresh it (as root) only when it is missing or stale.
    sudo=""
    [ "$(id -u)" = 0 ] || sudo=sudo
    (cd "$WORK" && apt-get download libb64-0d >/dev/null 2>&1) \
        || ($sudo apt-get update -qq && cd "$WORK" && apt-get download libb64-0d)
    dpkg -x "$WORK"/libb64-0d_*.deb "$WORK/b64"
    cp -L "$(find "$WORK/b64" -name 'libb64.so.0d*' | head -n1)" "$LIB/libb64.so.0d"
fi

if [ ! -e "$LIB/libcudart.so.12" ]; then
    $PIP download --quiet --no-deps --only-binary=:all: --dest "$WORK" "nvidia-cuda-runtime-cu12"
    unzip -q -o -j "$WORK"/nvidia_cuda_runtime_cu12-*.whl 'nvidia/cuda_runtime/lib/libcudart.so.12' -d "$WORK/cudart"
    cp "$WORK/cudart/libcudart.so.12" "$LIB/libcudart.so.12"
fi

cat > "$DEST/run.tmp" <<'WRAPPER'
#!/bin/sh
# perf_analyzer with its libraries (written by benchmarks/perf_analyzer/fetch.sh).
HERE="$(cd "$(dirname "$0")" && pwd)"
LD_LIBRARY_PATH="$HERE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$HERE/perf_analyzer" "$@"
WRAPPER
chmod 0755 "$DEST/run.tmp"
mv "$DEST/run.tmp" "$DEST/run"

"$DEST/run" --version >/dev/null 2>&1 || "$DEST/run" --help >/dev/null 2>&1 \
    || { echo "fetch.sh: $DEST/run does not start; try: ldd $DEST/perf_analyzer" >&2; exit 1; }
echo "perf_analyzer ready: $DEST/run"
