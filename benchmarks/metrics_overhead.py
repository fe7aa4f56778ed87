"""What recording metrics costs a batch-1 request: bwserve with metrics on and off, in one run.

For the MLP 784-512-512-10 (models/examples/mlp.py) and the built-in digits model,
two ``serve start`` processes per model serve the same repository: one with
``--metrics-port`` (every histogram, counter and gauge recorded, /metrics served)
and one with ``--metrics-port -1`` (no endpoint, every child a no-op). Rounds
alternate which goes first; each side pools its rounds. After each round the
metrics side's ``bwserve_requests_total`` must have grown by exactly what was sent,
so the "on" numbers are known to include the recording.

It also times the recording call itself (``ModelStats.success`` with bound children
against no-op children) in this process: that number is small and steady where
the end-to-end difference is within the noise of a shared machine.

    .venv/bin/python benchmarks/metrics_overhead.py [--requests 2000] [--rounds 5] [--concurrency 1]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import timeit
import urllib.request
from pathlib import Path

import numpy as np
import onnx

from baselines import launch
from serve.bench import LoadResult, run_load
from serve.client import build_request
from serve.config import ModelConfig
from serve.datatypes import NUMPY
from serve.deploy import prepare
from serve.metrics import Metrics, ModelMetrics
from serve.repository import ModelRepository
from serve.pool import Result
from serve.stats import ModelStats

SIDES = ("off", "on")


def deploy_models(repo: ModelRepository, work: Path) -> dict[str, ModelConfig]:
    from models.examples import digits, mlp

    configs = {}
    for name, model in (("mlp", mlp.build()), ("digits", digits.train().model)):
        path = work / f"{name}.onnx"
        onnx.save(model, path)
        prepared = prepare([path], name=name)
        repo.add(prepared.config, prepared.model_bytes)
        configs[name] = prepared.config
    return configs


def request_for(config: ModelConfig):
    rng = np.random.default_rng(0)
    inputs = {s.name: rng.random(s.shape).astype(NUMPY[s.datatype]) for s in config.inputs}
    return build_request(config.name, inputs)


def start(repo: ModelRepository, model: str, side: str, request, work: Path):
    """One server process; returns (running, metrics port or None)."""
    port, metrics_port = launch.free_port(), launch.free_port() if side == "on" else None
    command = launch.bwserve(repo.root, model, port)
    flag = command.index("--metrics-port")
    command[flag + 1] = str(metrics_port if metrics_port is not None else -1)
    return launch.start(f"bwserve-{side}/{model}", command, port, request, work / f"{model}-{side}.log"), metrics_port


def requests_total(metrics_port: int, model: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    prefix = f'bwserve_requests_total{{code="OK",device="cpu",model="{model}",'
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def recording_cost_us(runs: int = 200_000) -> dict[str, float]:
    """Microseconds per ``ModelStats.success`` with real and with no-op children."""
    result = Result({}, 50_000, 400_000, 0, None, "cpu")
    costs = {}
    for side, metrics in (("off", Metrics(enabled=False)), ("on", Metrics())):
        stats = ModelStats(ModelMetrics.bind(metrics, "m", "1", "cpu"))
        seconds = min(timeit.repeat(lambda: stats.success(0, 100_000, 600_000, 700_000, result),
                                    number=runs, repeat=3))
        costs[side] = seconds / runs * 1e6
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per side, model and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()

    cost = recording_cost_us()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo = ModelRepository(work / "repo")
        configs = deploy_models(repo, work)
        requests = {name: request_for(config) for name, config in configs.items()}
        servers = {}
        try:
            for model in configs:
                for side in SIDES:
                    servers[model, side] = start(repo, model, side, requests[model], work)
            pooled: dict[tuple[str, str], list[np.ndarray]] = {key: [] for key in servers}
            for r in range(args.rounds):
                order = SIDES if r % 2 == 0 else SIDES[::-1]
                print(f"round {r + 1}/{args.rounds} ({' then '.join(order)}), load {os.getloadavg()[0]:.2f}",
                      flush=True)
                for model in configs:
                    for side in order:
                        running, metrics_port = servers[model, side]
                        before = requests_total(metrics_port, model) if metrics_port else 0
                        result: LoadResult = run_load(running.address, requests[model],
                                                      concurrency=args.concurrency, requests=args.requests,
                                                      warmup=args.warmup)
                        if result.errors:
                            raise RuntimeError(f"{model}/{side}: errors {dict(result.errors)}")
                        if metrics_port:
                            counted = requests_total(metrics_port, model) - before
                            assert counted == args.requests + args.warmup, (counted, args.requests)
                        pooled[model, side].append(result.latencies_s)
        finally:
            for running, _ in servers.values():
                running.stop()

    lines = [f"{datetime.date.today()}, {platform.node()}, {os.cpu_count()} CPUs; "
             f"{args.rounds} rounds x {args.requests} requests per side, concurrency {args.concurrency}",
             "", "| model | metrics | p50 us | p99 us | p50 cost | p99 cost | p50 cost, median of rounds |",
             "|---|---|---|---|---|---|---|"]
    for model in configs:
        p = {side: np.percentile(np.concatenate(pooled[model, side]), [50, 99]) * 1e6 for side in SIDES}
        # Paired per round (the two sides ran back to back): robust to drift between rounds.
        paired = np.median([np.median(on) / np.median(off) - 1
                            for on, off in zip(pooled[model, "on"], pooled[model, "off"])]) * 100
        for side in SIDES:
            extra = ["", "", ""] if side == "off" else [
                *(f"{(p['on'][i] / p['off'][i] - 1) * 100:+.1f}%" for i in (0, 1)), f"{paired:+.1f}%"]
            lines.append(f"| {model} | {side} | {p[side][0]:.0f} | {p[side][1]:.0f} | " + " | ".join(extra) + " |")
    lines += ["", f"Recording one request (ModelStats.success): {cost['on']:.2f} us with metrics, "
              f"{cost['off']:.2f} us with no-op children."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
