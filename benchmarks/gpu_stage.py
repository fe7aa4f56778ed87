"""Stage the wheels for benchmarks/gpu_check.sh on a machine with no network (issue 6).

Run here, where pip can download:

    .venv/bin/python benchmarks/gpu_stage.py            # cp312, the lent H200 machine's python3

It downloads, for the target python and manylinux x86-64, every wheel the GPU check
imports: pyproject.toml's runtime dependencies and its [gpu] extra's onnxruntime-gpu
pinned to ORT_GPU, less SKIP, plus pip (gpu_check.sh makes its venv without
ensurepip). The wheels and the MNIST model go into one tar, split into parts small enough
for one `run` call's carry each (benchmarks/README.md, "GPU (issue 6)"), with sha256 sums:

    .cache/gpu-wheels/payload/        wheels/*.whl, models/cntk_mnist.onnx, SHA256SUMS, MANIFEST.txt
    .cache/gpu-wheels/parts/          payload.tar.00, .01, ... and SHA256SUMS (parts and whole tar)

gpu_check.sh verifies and reassembles the parts and installs with --no-index.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".cache" / "gpu-wheels"
MNIST = ROOT.parent / "shared" / "models" / "cntk_mnist" / "model.onnx"
# The newest onnxruntime-gpu on PyPI; its Linux wheels since 1.29 are built for CUDA 13
# (extras name nvidia-cuda-runtime~=13.0, nvidia-cudnn-cu13). 1.31 rejects ONNX IR 14, and
# the project writes IR 10 (models/convert TARGET_IR_VERSION).
ORT_GPU = "onnxruntime-gpu==1.31.1"
# Runtime dependencies that gpu_check.py never imports: scikit-learn is imported inside
# functions only, to load the "digits" calibration set and to train models/examples/digits
# (checked by running gpu_check.py on the cpu backend from a venv of these wheels alone).
# scikit-learn with scipy is 45 MB: one more device call.
SKIP = {"scikit-learn": "imported only to load the digits calibration set and train models/examples/digits"}
BOOTSTRAP = ["pip"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64"]
MIB = 1 << 20


def requirements() -> list[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    out = []
    for dep in deps:
        name = re.match(r"[A-Za-z0-9_.-]+", dep).group(0).lower()
        if name in SKIP:
            continue
        out.append(dep)
    return out + [ORT_GPU] + BOOTSTRAP


def download(reqs: list[str], python: str, dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
           "--python-version", python, "--implementation", "cp",
           "--abi", "cp" + python.replace(".", ""), "-d", str(dest)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run(cmd + reqs, check=True)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def check_one_version_each(wheels: list[Path]) -> None:
    names: dict[str, list[str]] = {}
    for wheel in wheels:
        names.setdefault(wheel.name.split("-")[0].lower().replace("_", "-"), []).append(wheel.name)
    twice = {k: v for k, v in names.items() if len(v) > 1}
    if twice:  # two versions of one package stop the whole --no-deps install
        sys.exit(f"two versions of one package: {twice}")
    if "onnxruntime" in names:
        sys.exit("the CPU onnxruntime was pulled in beside onnxruntime-gpu: the two must not be installed together")


def write_payload(payload: Path, python: str, reqs: list[str]) -> None:
    wheels = sorted((payload / "wheels").glob("*.whl"))
    check_one_version_each(wheels)
    models = payload / "models"
    models.mkdir(exist_ok=True)
    if MNIST.exists():
        shutil.copyfile(MNIST, models / "cntk_mnist.onnx")
    files = wheels + sorted(models.iterdir())
    (payload / "SHA256SUMS").write_text(
        "".join(f"{sha256(f)}  {f.relative_to(payload)}\n" for f in files))
    lines = [f"# bwserve GPU check payload, staged {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"python {python}", f"requirements {' '.join(reqs)}",
             f"skipped {'; '.join(f'{k}: {v}' for k, v in SKIP.items())}", ""]
    lines += [f"{f.stat().st_size:>11}  {f.relative_to(payload)}" for f in files]
    lines.append(f"{sum(f.stat().st_size for f in files):>11}  total")
    (payload / "MANIFEST.txt").write_text("\n".join(lines) + "\n")


def split_tar(payload: Path, parts: Path, part_bytes: int) -> list[Path]:
    """One uncompressed tar of the payload (wheels are compressed already), cut into parts."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(payload.rglob("*")):
            if path.is_file():
                info = tar.gettarinfo(str(path), str(path.relative_to(payload)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with open(path, "rb") as f:
                    tar.addfile(info, f)
    data = buffer.getbuffer()
    shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True)
    written = []
    for i, start in enumerate(range(0, len(data), part_bytes)):
        part = parts / f"payload.tar.{i:02d}"
        part.write_bytes(data[start:start + part_bytes])
        written.append(part)
    sums = [f"{sha256(p)}  {p.name}\n" for p in written]
    sums.append(f"{hashlib.sha256(data).hexdigest()}  payload.tar\n")
    (parts / "SHA256SUMS").write_text("".join(sums))
    return written


def tree_bytes() -> int:
    """What travels with every call besides the carried part: tracked and untracked-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    return sum((ROOT / p.decode()).stat().st_size for p in listed if p and (ROOT / p.decode()).is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python-version", default="3.12", help="the device's python3 (default 3.12)")
    parser.add_argument("--part-mib", type=int, default=58, help="size of each part (default 58 MiB)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    payload, parts = args.out / "payload", args.out / "parts"
    reqs = requirements()
    shutil.rmtree(payload, ignore_errors=True)
    (payload / "wheels").mkdir(parents=True)
    print("downloading:", " ".join(reqs), flush=True)
    download(reqs, args.python_version, payload / "wheels")
    write_payload(payload, args.python_version, reqs)
    written = split_tar(payload, parts, args.part_mib * MIB)
    print((payload / "MANIFEST.txt").read_text())
    tree = tree_bytes()
    for part in written:
        print(f"{part.relative_to(ROOT)}  {part.stat().st_size / MIB:.1f} MiB")
    print(f"{len(written)} parts; the working tree adds {tree / MIB:.1f} MiB to each call")
    if tree + args.part_mib * MIB > 63 * MIB:
        print("warning: tree + part exceeds 63 MiB of the 64 MiB a call carries: lower --part-mib")
    if not MNIST.exists():
        print(f"warning: {MNIST} is missing: the check will have no MNIST row")
    return 0


if __name__ == "__main__":
    sys.exit(main())
