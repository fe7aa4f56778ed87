"""GPU check (issue 6): serve models on gpu and cpu, compare outputs, print batch-1 latency.

Run through benchmarks/gpu_check.sh on a machine with an NVIDIA GPU. For each
model it starts one bwserve with the model deployed on both backends, checks the
gpu outputs against the cpu backend's, and prints p50/p99 end to end (gRPC,
serve.bench) and compute-only (backend.run in process), plus the first
request's latency after warm-up. ``--backends cpu`` runs the same on the CPU
alone (gpu_check.sh --no-gpu: a test of the installed wheels without a GPU).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from backends import get_backend
from models.examples import mlp
from serve.bench import run_load
from serve.client import Client, build_request, random_inputs
from serve.config import MODEL_FILE
from serve.deploy import prepare
from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "models" / "cntk_mnist" / "model.onnx"  # not on the device: --mnist
MODELS = {
    "mnist": MNIST,
    "mlp_small": (784, 512, 512, 10),
    "mlp_large": (4096, 4096, 4096, 1024),
}


def _source(spec, tmp: Path) -> Path:
    if isinstance(spec, Path):
        return spec
    path = tmp / f"mlp_{'_'.join(map(str, spec))}.onnx"
    onnx.save(mlp.build(spec), path)
    return path


def compute_only(repo: ModelRepository, name: str, requests: int) -> np.ndarray:
    config = repo.read_config(name, 1)
    backend = get_backend(config.backend)(config.spec(), 0)
    backend.load(repo.version_dir(name, 1) / MODEL_FILE)
    sample = {s.name: np.random.default_rng(0).random([max(d, 1) for d in s.shape]).astype(np.float32)
              for s in config.inputs}
    for _ in range(20):
        backend.run(sample)
    times = np.empty(requests)
    for i in range(requests):
        t0 = time.perf_counter()
        backend.run(sample)
        times[i] = time.perf_counter() - t0
    backend.close()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--mnist", type=Path, default=MNIST, help="the CNTK MNIST model")
    parser.add_argument("--backends", default="cpu,gpu", help="cpu,gpu (default), or cpu alone")
    args = parser.parse_args()
    backends = args.backends.split(",")
    if backends[0] != "cpu":
        parser.error("--backends starts with cpu: its outputs are the reference")
    models = {**MODELS, "mnist": args.mnist}
    if not args.mnist.exists():
        print(f"{args.mnist} is missing: no MNIST row")
        del models["mnist"]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        repo = ModelRepository(tmp / "repo")
        for model, spec in models.items():
            source = _source(spec, tmp)
            for backend in backends:
                prepared = prepare([source], name=f"{model}_{backend}", backend=backend,
                                   precision=args.precision if backend == "gpu" else "fp32")
                repo.add(prepared.config, prepared.model_bytes)
        started = time.perf_counter()
        with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None)) as server:
            print(f"server up with {len(models) * len(backends)} models in {time.perf_counter() - started:.1f} s "
                  "(loads and warm-ups included)")
            print(f"{'model':10} {'backend':7} {'first ms':>9} {'e2e p50 us':>11} {'e2e p99 us':>11} "
                  f"{'compute p50':>12} {'compute p99':>12} {'max |gpu-cpu|':>14}")
            with Client(server.address) as client:
                for model in models:
                    inputs = random_inputs(client.metadata(f"{model}_cpu"), seed=1)
                    reference = client.infer(f"{model}_cpu", inputs)
                    for backend in backends:
                        name = f"{model}_{backend}"
                        t0 = time.perf_counter()
                        got = client.infer(name, inputs)
                        first_ms = (time.perf_counter() - t0) * 1e3
                        diff = max(float(np.abs(got[k] - reference[k]).max()) for k in got)
                        tolerance = 1e-2 if args.precision == "fp16" else 1e-3
                        if backend == "gpu" and not diff <= tolerance * max(1.0, max(
                                float(np.abs(v).max()) for v in reference.values())):
                            failures += 1
                        load = run_load(server.address, build_request(name, inputs), requests=args.requests)
                        compute = compute_only(server.server.registry.repo, name, args.requests)
                        print(f"{model:10} {backend:7} {first_ms:9.2f} {load.percentile_us(50):11.1f} "
                              f"{load.percentile_us(99):11.1f} {np.percentile(compute, 50) * 1e6:12.1f} "
                              f"{np.percentile(compute, 99) * 1e6:12.1f} {diff:14.3g}")
    print("gpu outputs match cpu" if not failures else f"{failures} gpu output mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
