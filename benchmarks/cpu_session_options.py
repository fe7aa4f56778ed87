"""CPU backend session options, measured end to end through bwserve at batch 1.

Each variant (intra-op threads x spinning) is the same model deployed with other
options and served by its own `serve start` process; rounds alternate the
variants and one client (serve.bench.run_load) drives them all, so drift hits
every variant alike. Prints p50/p99 per variant and the ratio to the default.

    .venv/bin/python benchmarks/cpu_session_options.py [--requests 1000 --rounds 5]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import launch  # noqa: E402

from models.examples import mlp  # noqa: E402
from serve.bench import run_load  # noqa: E402
from serve.client import build_request  # noqa: E402
from serve.deploy import prepare  # noqa: E402
from serve.repository import ModelRepository  # noqa: E402

MNIST = launch.ROOT.parent / "shared" / "models" / "cntk_mnist" / "model.onnx"
# (label, threads (0: cores / instances), spinning)
VARIANTS = (("default", 0, "1"), ("no-spin", 0, "0"), ("spin in run", 0, "run"), ("1-thread", 1, "1"),
            ("1-thread no-spin", 1, "0"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        onnx.save(mlp.build(), work / "mlp.onnx")
        sources = {"mnist": MNIST, "mlp": work / "mlp.onnx"}
        servers, requests = {}, {}
        try:
            for model, source in sources.items():
                for label, threads, spinning in VARIANTS:
                    repo = ModelRepository(work / f"{model}-{label.replace(' ', '_')}")
                    prepared = prepare([source], name=model, threads=threads,
                                       backend_options={"spinning": spinning})
                    repo.add(prepared.config, prepared.model_bytes)
                    rng = np.random.default_rng(0)
                    inputs = {s.name: rng.random(s.shape).astype(np.float32) for s in prepared.config.inputs}
                    requests[model] = build_request(model, inputs)
                    port = launch.free_port()
                    servers[model, label] = launch.start(f"{model}/{label}", launch.bwserve(repo.root, model, port),
                                                         port, requests[model], work / f"{model}-{label}.log")
            latencies = {key + (c,): [] for key in servers for c in args.concurrency}
            for r in range(args.rounds):
                order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]  # rotate who goes first
                for model in sources:
                    for c in args.concurrency:
                        for label, _, _ in order:
                            result = run_load(servers[model, label].address, requests[model], concurrency=c,
                                              requests=args.requests)
                            latencies[model, label, c].append(result.latencies_s)
        finally:
            for server in servers.values():
                server.stop()
    print("| model | conc | variant | p50 us | p99 us | p50 / default | p99 / default |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for model in sources:
        for c in args.concurrency:
            base = np.concatenate(latencies[model, "default", c])
            for label, _, _ in VARIANTS:
                lat = np.concatenate(latencies[model, label, c])
                p50, p99 = np.percentile(lat, 50) * 1e6, np.percentile(lat, 99) * 1e6
                print(f"| {model} | {c} | {label} | {p50:.0f} | {p99:.0f} | "
                      f"{p50 / (np.percentile(base, 50) * 1e6):.2f} | {p99 / (np.percentile(base, 99) * 1e6):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
