"""Serving overhead at batch 1: bwserve against the obvious server, the gRPC floor and KServe.

For the CNTK MNIST model and the MLP 784-512-512-10, at concurrency 1, 4 and 16,
one run measures with the same client (``serve.bench.run_load``):

- bwserve (``serve start``, its own process);
- the obvious grpc.aio + onnxruntime server (baselines/obvious_grpc.py);
- an empty-reply grpc.aio server, the floor Python gRPC imposes (baselines/empty_grpc.py);
- KServe's Python ModelServer (baselines/kserve_onnx.py, in .cache/kserve-venv);
- onnxruntime's own ``session.run`` with bwserve's CPU session options, timed in
  this process before any server starts.

Rounds alternate the servers (in a rotated order each round) so that drift on a
shared machine hits all of them alike; each point pools its rounds. Ratios
within one run are what counts; absolute numbers drift from run to run. ``--twin``
adds a second bwserve process, the A/A control; ``--restart`` starts every server
afresh each round, since one process can stay lucky or unlucky for a whole run.

    .venv/bin/python benchmarks/serving.py [--requests 1000] [--rounds 5] [--no-kserve] [--twin] [--restart]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from backends.cpu import CpuBackend
from baselines import launch
from protos import inference_pb2 as pb
from serve.bench import LoadResult, run_load
from serve.client import Client, build_request, parse_response
from serve.config import MODEL_FILE, ModelConfig
from serve.datatypes import NUMPY
from serve.deploy import prepare
from serve.repository import ModelRepository

MNIST = launch.ROOT.parent / "shared" / "models" / "cntk_mnist" / "model.onnx"
SERVERS = ("bwserve", "obvious", "empty", "kserve")
TWIN = "bwserve-twin"  # --twin: a second, identical bwserve process, the A/A control


@dataclass
class Point:
    """Pooled rounds of one model x concurrency x server."""

    latencies: list[np.ndarray] = field(default_factory=list)
    wall_s: float = 0.0
    errors: int = 0
    # bwserve only: its own ModelStatistics over these requests (count, success,
    # queue, compute_input, compute_infer, compute_output ns), where the time went.
    server_ns: np.ndarray = field(default_factory=lambda: np.zeros(6, dtype=np.int64))

    def add(self, result: LoadResult) -> None:
        self.latencies.append(result.latencies_s)
        self.wall_s += result.wall_s
        self.errors += sum(result.errors.values())

    def pooled(self) -> LoadResult:
        return LoadResult(np.concatenate(self.latencies), wall_s=self.wall_s)


def deploy_models(repo: ModelRepository, work: Path) -> dict[str, ModelConfig]:
    """Both models into one repository, through the path `serve deploy` takes."""
    from models.examples import mlp

    mlp_path = work / "mlp.onnx"
    onnx.save(mlp.build(), mlp_path)
    configs = {}
    for name, source in (("mnist", MNIST), ("mlp", mlp_path)):
        prepared = prepare([source], name=name)
        repo.add(prepared.config, prepared.model_bytes)
        configs[name] = prepared.config
    return configs


def model_path(repo: ModelRepository, name: str) -> Path:
    return repo.version_dir(name, 1) / MODEL_FILE


def random_inputs(config: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {s.name: rng.random(s.shape).astype(NUMPY[s.datatype]) for s in config.inputs}


def time_session_run(config: ModelConfig, path: Path, inputs, runs: int) -> np.ndarray:
    """Seconds per ``session.run`` with bwserve's CPU backend options (no server running)."""
    backend = CpuBackend(config.spec(), 0)
    backend.load(path)
    session, names = backend.session, [o.name for o in config.outputs]
    for _ in range(50):
        session.run(names, inputs)
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        session.run(names, inputs)
        times[i] = time.perf_counter() - t0
    backend.close()
    return times


def reference_outputs(config: ModelConfig, path: Path, inputs) -> dict[str, np.ndarray]:
    """onnxruntime's answer with bwserve's CPU options: what every server must send back."""
    backend = CpuBackend(config.spec(), 0)
    backend.load(path)
    try:
        return backend.run(inputs)
    finally:
        backend.close()


def check_outputs(address: str, request, expected: dict[str, np.ndarray]) -> None:
    """A server that answers fast but wrong must not make it into the table."""
    with Client(address) as client:
        got = parse_response(client.stub.ModelInfer(request, timeout=10))
    for name, want in expected.items():
        if not np.allclose(got[name], want, rtol=1e-4, atol=1e-5):
            raise AssertionError(f"{address}: output {name} differs from onnxruntime's")


def server_command(name: str, repo: ModelRepository, model: str, port: int) -> list[str]:
    if name in ("bwserve", TWIN):
        return launch.bwserve(repo.root, model, port)
    if name == "obvious":
        return launch.obvious(model_path(repo, model), model, port)
    if name == "kserve":
        return launch.kserve(model_path(repo, model), model, port)
    return launch.empty(port)


def start_servers(names, repo, models, requests, work: Path) -> dict[tuple[str, str], launch.Running]:
    """One process per model and server, all up for the whole run (none left behind on failure)."""
    servers = {}
    try:
        for model in models:
            for name in names:
                port = launch.free_port()
                command = server_command(name, repo, model, port)
                print(f"starting {name} for {model} on port {port}", flush=True)
                servers[model, name] = launch.start(f"{name}/{model}", command, port, requests[model],
                                                    work / f"{name}-{model}.log")
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


STAGES = ("success", "queue", "compute_input", "compute_infer", "compute_output")


def server_stats(address: str, model: str) -> np.ndarray:
    """bwserve's cumulative (count, *stage ns) for one model."""
    with Client(address) as client:
        (stats,) = client.stub.ModelStatistics(pb.ModelStatisticsRequest(name=model), timeout=10).model_stats
    s = stats.inference_stats
    return np.array([s.success.count] + [getattr(s, stage).ns for stage in STAGES], dtype=np.int64)


def measure_round(r, servers, models, names, concurrencies, requests, args, points: dict[tuple, Point]) -> None:
    """Every (model, concurrency, server) point once, servers interleaved, into ``points``."""
    order = names[r % len(names):] + names[:r % len(names)]  # rotate: no server always goes first
    print(f"round {r + 1}/{args.rounds} ({' '.join(order)}), load {os.getloadavg()[0]:.2f}", flush=True)
    for model in models:
        for c in concurrencies:
            for name in order:
                address = servers[model, name].address
                point = points.setdefault((model, c, name), Point())
                before = server_stats(address, model) if name == "bwserve" else None
                result = run_load(address, requests[model], concurrency=c,
                                  requests=args.requests, duration=args.duration, warmup=args.warmup)
                if before is not None:  # warm-up requests included: a small bias, same in every round
                    point.server_ns += server_stats(address, model) - before
                point.add(result)


def report(points, run_p50, models, names, concurrencies) -> str:
    """Markdown: one row per point, the ratios the targets are stated in, per round, then bwserve's breakdown."""
    us = lambda s: f"{s:.0f}"  # noqa: E731
    lines = ["| model | conc | server | p50 us | p99 us | p99.9 us | req/s | overhead p50 us | errors |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    twin = TWIN in names
    ratios = ["| model | conc | ours/obvious p50 | ours/obvious p99 | our overhead / floor | "
              "ours/KServe p50 | ours/KServe p99 |" + (" twin/ours p50 | twin/ours p99 |" if twin else ""),
              "|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if twin else "")]
    for model in models:
        for c in concurrencies:
            rows = {}
            for name in names:
                point = points[model, c, name]
                pooled = point.pooled()
                p50, p99, p999 = (pooled.percentile_us(q) for q in (50, 99, 99.9))
                overhead = p50 - run_p50[model] if name != "empty" else p50
                rows[name] = (p50, p99, overhead)
                lines.append(f"| {model} | {c} | {name} | {us(p50)} | {us(p99)} | {us(p999)} | "
                             f"{pooled.throughput:.0f} | {us(overhead)} | {point.errors} |")
            ours = rows["bwserve"]
            ratio = lambda a, b: f"{a / b:.2f}" if b == b and b else "-"  # noqa: E731
            kserve = rows.get("kserve", (float("nan"),) * 3)
            ratios.append(f"| {model} | {c} | {ratio(ours[0], rows['obvious'][0])} | "
                          f"{ratio(ours[1], rows['obvious'][1])} | {ratio(ours[2], rows['empty'][0])} | "
                          f"{ratio(ours[0], kserve[0])} | {ratio(ours[1], kserve[1])} |"
                          + (f" {ratio(rows[TWIN][0], ours[0])} | {ratio(rows[TWIN][1], ours[1])} |" if twin else ""))
    return "\n".join(lines + [""] + ratios + [""] + per_round(points, models, names, concurrencies)
                     + [""] + breakdown(points, models, concurrencies))


def per_round(points, models, names, concurrencies) -> list[str]:
    """p50 ratios round by round: median [lowest, highest] and the rounds where the first server
    was faster. Each round measures both servers back to back, so drift between rounds cancels;
    the A/A twin's column is what no difference looks like. A median that stays off 1 run
    after run (with --restart) is a real difference even when its range straddles 1."""
    pairs = [("bwserve", "obvious")] + ([(TWIN, "bwserve")] if TWIN in names else [])
    lines = ["| model | conc | " + " | ".join(f"{a}/{b} p50 per round" for a, b in pairs) + " |",
             "|---|---:|" + "---:|" * len(pairs)]
    for model in models:
        for c in concurrencies:
            cells = []
            for a, b in pairs:
                rounds = [np.percentile(x, 50) / np.percentile(y, 50) for x, y in
                          zip(points[model, c, a].latencies, points[model, c, b].latencies)]
                cells.append(f"{np.median(rounds):.2f} [{min(rounds):.2f}, {max(rounds):.2f}], "
                             f"faster in {sum(r < 1 for r in rounds)}/{len(rounds)}")
            lines.append(f"| {model} | {c} | " + " | ".join(cells) + " |")
    return lines


def breakdown(points, models, concurrencies) -> list[str]:
    """Where a bwserve request's time went, means from its own ModelStatistics (us)."""
    lines = ["| model | conc | client mean | in handler | queue (hop to worker) | decode | "
             "compute | encode | handler rest (hop back, stats) | outside handler (gRPC, client) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model in models:
        for c in concurrencies:
            point = points[model, c, "bwserve"]
            count, total, queue, decode, compute, encode = point.server_ns / max(1, point.server_ns[0]) / 1e3
            mean = float(np.mean(np.concatenate(point.latencies))) * 1e6
            rest = total - queue - decode - compute - encode
            lines.append(f"| {model} | {c} | {mean:.0f} | {total:.0f} | {queue:.0f} | {decode:.0f} | "
                         f"{compute:.0f} | {encode:.0f} | {rest:.0f} | {mean - total:.0f} |")
    return lines


def describe_tree() -> str:
    """The commit measured, and whether serve/ or backends/ had uncommitted changes."""
    run = lambda *a: subprocess.run(["git", *a], cwd=launch.ROOT, capture_output=True, text=True).stdout.strip()  # noqa: E731
    dirty = run("status", "--porcelain", "--", "serve", "backends")
    return run("rev-parse", "--short", "HEAD") + (" + uncommitted serve/backends changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per point per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over every point (default %(default)s)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds at most per point per round")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured requests before each point")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--session-runs", type=int, default=3000, help="timed session.run calls per model")
    parser.add_argument("--no-kserve", action="store_true", help="leave KServe out")
    parser.add_argument("--twin", action="store_true",
                        help="add a second bwserve process: how far two identical servers differ in one run "
                             "(the noise every other ratio carries)")
    parser.add_argument("--restart", action="store_true",
                        help="start every server afresh each round: a process's own luck (where its threads "
                             "and memory land) can last a whole run, and a fresh start each round averages it out")
    args = parser.parse_args()

    names = [n for n in SERVERS if n != "kserve" or not args.no_kserve] + ([TWIN] if args.twin else [])
    if "kserve" in names and not launch.KSERVE_PYTHON.exists():
        raise SystemExit(f"no {launch.KSERVE_PYTHON}: run bash benchmarks/baselines/kserve_setup.sh "
                         "or pass --no-kserve")
    with tempfile.TemporaryDirectory(prefix="bwserve-bench-") as tmp:
        work = Path(tmp)
        repo = ModelRepository(work / "repo")
        configs = deploy_models(repo, work)
        models = list(configs)
        inputs = {m: random_inputs(c) for m, c in configs.items()}
        requests = {m: build_request(m, inputs[m]) for m in models}

        run_p50, expected = {}, {}
        for model, config in configs.items():
            times = time_session_run(config, model_path(repo, model), inputs[model], args.session_runs)
            run_p50[model] = float(np.percentile(times, 50) * 1e6)
            print(f"session.run {model}: p50 {run_p50[model]:.0f} us, p99 {np.percentile(times, 99) * 1e6:.0f} us",
                  flush=True)
            expected[model] = reference_outputs(config, model_path(repo, model), inputs[model])

        started = datetime.datetime.now().isoformat(timespec="minutes")
        points: dict[tuple, Point] = {}
        servers: dict = {}
        try:
            for r in range(args.rounds):
                if not servers or args.restart:
                    for server in servers.values():
                        server.stop()
                    servers = start_servers(names, repo, models, requests, work)
                    for (model, name), server in servers.items():
                        if name != "empty":
                            check_outputs(server.address, requests[model], expected[model])
                measure_round(r, servers, models, names, args.concurrency, requests, args, points)
        finally:
            for server in servers.values():
                server.stop()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{started}, {describe_tree()}, {platform.node()}, {os.cpu_count()} cores, load average {load} "
          f"at the end; {args.rounds} rounds x {args.requests} requests per point"
          + (", servers restarted each round" if args.restart else "") + "\n")
    print("session.run p50 (us): " + ", ".join(f"{m} {v:.0f}" for m, v in run_p50.items()) + "\n")
    print(report(points, run_p50, models, names, args.concurrency))


if __name__ == "__main__":
    main()
