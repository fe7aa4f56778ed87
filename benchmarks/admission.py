"""Admission control under open-loop overload: a slow sleep model, or a fast CPU-bound one.

``--model sleep`` (issues 3): one server process serves the same null/sleep
model twice, ``adm`` with admission control and ``fifo`` without (plain FIFO,
bounded only by a large queue); requests carry no deadline, the model's SLO is
theirs.

``--model cpu-mlp`` (issue 22): an MLP 784-2048-2048-2048-10 on the CPU backend,
about 1 ms a request, where the Python front end (gRPC, the event loop, decode)
costs as much as the model. Each variant (``--variant LABEL=THREADS:KEY=VALUE,...``,
several) is the same model with other CPU options, served by its own ``serve
start`` process; every request carries a gRPC deadline of ``--slo-ms``.

Both: the load comes from ``--clients`` generator processes (benchmarks/loadgen.py),
never from this process or the server's. Each variant's capacity is measured
first, in the same run, with the same generator (closed loop, concurrency 4,
as issue 3 measured it); the first variant's capacity is the reference that every
offered load is a multiple of. Then every point (load x variant, variants in
a rotated order) runs ``--rounds`` times, interleaved, and the table gives
per-round medians: goodput (requests answered within the SLO at the client,
per second), late (DEADLINE_EXCEEDED at the client, share of those sent),
refused (RESOURCE_EXHAUSTED / UNAVAILABLE, share of those sent), and p50/p99 of
the served requests pooled over rounds. ``client cpu`` is the generators' CPU
seconds per second of the run (out of the machine's cores).

    .venv/bin/python benchmarks/admission.py [--model sleep --sleep-ms 5 --slo-ms 50]
    .venv/bin/python benchmarks/admission.py --model cpu-mlp --slo-ms 50 [--rounds 3]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from baselines import launch  # noqa: E402
from models.convert.onnx_io import finalize  # noqa: E402
from serve.client import build_request  # noqa: E402
from serve.deploy import prepare  # noqa: E402
from serve.repository import ModelRepository  # noqa: E402

LOADGEN = ROOT / "benchmarks" / "loadgen.py"
MLP_SIZES = (784, 2048, 2048, 2048, 10)
# The CPU variants the issue measured: onnxruntime's defaults, one thread, no spinning.
CPU_VARIANTS = ("default=0:", "threads-1=1:", "no-spin=0:spinning=0")


@dataclass
class Variant:
    label: str
    model: str  # its name in the repository
    tree: str = ""  # a checkout of bwserve to serve it from (a commit before a change); "": this one
    address: str = ""
    capacity: float = 0.0  # closed loop, requests/s
    rounds: dict[float, list[dict]] = field(default_factory=dict)  # load -> one merged result per round


def _echo_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "echo", [x], [y])
    return finalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))


def _sleep_repo(root: Path, args) -> tuple[list[Variant], dict[str, np.ndarray]]:
    source = root / "echo.onnx"
    onnx.save(_echo_model(), source)
    repo = ModelRepository(root / "repo")
    variants = []
    for label, name, admission in (("admission", "adm", True), ("FIFO", "fifo", False)):
        prepared = prepare([source], name=name, backend="null", slo_ms=args.slo_ms,
                           backend_options={"sleep_ms": str(args.sleep_ms)})
        repo.add(prepared.config.replace(admission_control=admission, max_queue_size=args.max_queue,
                                         warmup_runs=5), prepared.model_bytes)
        variants.append(Variant(label, name))
    return variants, {"x": np.random.default_rng(0).random((1, 16), dtype=np.float32)}


def _parse_variant(text: str) -> tuple[str, int, dict[str, str], str]:
    """LABEL=THREADS:KEY=VALUE,...[@TREE] -> (label, threads, backend options, tree)."""
    text, _, tree = text.partition("@")
    label, _, rest = text.partition("=")
    threads, _, options = rest.partition(":")
    pairs = dict(item.split("=", 1) for item in options.split(",") if item)
    return label, int(threads or 0), pairs, tree


def _mlp_repo(root: Path, args) -> tuple[list[Variant], dict[str, np.ndarray]]:
    from models.examples import mlp

    source = root / "mlp.onnx"
    onnx.save(mlp.build(MLP_SIZES), source)
    repo = ModelRepository(root / "repo")
    variants = []
    for index, text in enumerate(args.variant or CPU_VARIANTS):
        label, threads, options, tree = _parse_variant(text)
        name = f"mlp{index}"
        prepared = prepare([source], name=name, backend="cpu", threads=threads, backend_options=options)
        repo.add(prepared.config.replace(max_queue_size=args.max_queue), prepared.model_bytes)
        variants.append(Variant(label, name, tree))
    return variants, {"input": np.random.default_rng(0).random((1, MLP_SIZES[0]), dtype=np.float32)}


def _start(repo: Path, models: list[str], inputs: dict[str, np.ndarray], log: Path,
           tree: str = "") -> launch.Running:
    """``serve start`` for ``models``; from ``tree`` (python -P, that tree on PYTHONPATH) if given."""
    port = launch.free_port()
    command = launch.bwserve(repo, models[0], port) + [a for m in models[1:] for a in ("--model", m)]
    if tree:
        tree, *env = tree.split("#")
        command = ["env", f"PYTHONPATH={tree}", *env, sys.executable, "-P", "-m", "serve.cli"] + command[1:]
    return launch.start(models[0], command, port, build_request(models[0], inputs), log)


def _generate(address: str, request: Path, clients: int, duration: float, *, rate: float = 0.0,
              concurrency: int = 4, timeout_ms: float = 0.0, seed: int = 0) -> dict:
    """Run ``clients`` generator processes together; their results merged."""
    start_at = time.time() + 1.0  # after every generator has connected and warmed up
    procs = []
    for i in range(clients):
        command = [sys.executable, str(LOADGEN), address, str(request), "--duration", str(duration),
                   "--seed", str(seed * 1000 + i), "--start-at", str(start_at), "--timeout-ms", str(timeout_ms)]
        command += ["--rate", str(rate / clients)] if rate else ["--concurrency", str(concurrency)]
        procs.append(subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True))
    outs = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=duration + 120)
        if proc.returncode:
            raise RuntimeError(f"load generator exited with {proc.returncode}")
        outs.append(json.loads(stdout))
    return {"latencies_s": [x for o in outs for x in o["latencies_s"]],
            "errors": sum((Counter(o["errors"]) for o in outs), Counter()),
            "wall_s": max(o["wall_s"] for o in outs), "sent": sum(o["sent"] for o in outs),
            "cpu_s": sum(o["cpu_s"] for o in outs), "lag_p99_ms": max(o["lag_p99_ms"] for o in outs)}


def _capacity(variant: Variant, request: Path, args) -> float:
    out = _generate(variant.address, request, 1, args.capacity_s, concurrency=4)
    return len(out["latencies_s"]) / out["wall_s"]


def _cells(variant: Variant, load: float, reference: float, slo_s: float) -> str:
    rounds = variant.rounds[load]
    good, late, refused, cpu = [], [], [], []
    kinds: Counter = Counter()
    for r in rounds:
        lat = np.asarray(r["latencies_s"])
        good.append(int((lat <= slo_s).sum()) / r["wall_s"])
        late_n = sum(v for k, v in r["errors"].items() if k.startswith("DEADLINE_EXCEEDED"))
        late.append(late_n / max(1, r["sent"]))
        refused.append((sum(r["errors"].values()) - late_n) / max(1, r["sent"]))
        cpu.append(r["cpu_s"] / r["wall_s"])
        kinds.update(r["errors"])
    served = np.concatenate([np.asarray(r["latencies_s"]) for r in rounds])
    p50, p99 = (np.percentile(served, [50, 99]) * 1e3) if len(served) else (np.nan, np.nan)
    goodput = float(np.median(good))
    top = "; ".join(f"{k} {v}" for k, v in kinds.most_common(3)) or "-"
    return (f"| {variant.label} | {load:g}x | {load * reference:.0f} | {goodput:.0f} | {goodput / reference:.0%} | "
            f"{np.median(late):.1%} | {np.median(refused):.1%} | {p50:.1f} | {p99:.1f} | {np.median(cpu):.2f} | "
            f"{max(r['lag_p99_ms'] for r in rounds):.1f} | {top} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("sleep", "cpu-mlp"), default="sleep")
    parser.add_argument("--sleep-ms", type=float, default=5.0, help="service time of the null backend")
    parser.add_argument("--slo-ms", type=float, default=50.0,
                        help="sleep: the model's SLO; cpu-mlp: each request's gRPC deadline")
    parser.add_argument("--variant", action="append",
                        help="cpu-mlp: LABEL=THREADS:KEY=VALUE,...[@TREE] (repeatable; the first is "
                             "the reference; TREE: a bwserve checkout to serve it from; "
                             f"default {' '.join(CPU_VARIANTS)})")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of arrivals per point")
    parser.add_argument("--capacity-s", type=float, default=3.0, help="seconds per closed-loop capacity run")
    parser.add_argument("--loads", default="0.5,0.9,1.5,3", help="offered load as multiples of capacity")
    parser.add_argument("--rounds", type=int, default=1, help="repeats of every point, interleaved")
    parser.add_argument("--clients", type=int, default=1, help="load generator processes")
    parser.add_argument("--max-queue", type=int, default=4096, help="max_queue_size of every model")
    args = parser.parse_args(argv)
    loads = [float(x) for x in args.loads.split(",")]
    slo_s = args.slo_ms / 1e3

    with tempfile.TemporaryDirectory(prefix="bwserve-admission-") as tmp:
        work = Path(tmp)
        variants, inputs = (_sleep_repo if args.model == "sleep" else _mlp_repo)(work, args)
        servers = []
        try:
            if args.model == "sleep":  # both models in one process, as issue 3 measured
                servers.append(_start(work / "repo", [v.model for v in variants], inputs, work / "server.log"))
                for v in variants:
                    v.address = servers[0].address
            else:
                for v in variants:
                    servers.append(_start(work / "repo", [v.model], inputs, work / f"{v.model}.log", v.tree))
                    v.address = servers[-1].address
            requests = {}
            for v in variants:
                requests[v.model] = work / f"{v.model}.request"
                requests[v.model].write_bytes(build_request(v.model, inputs).SerializeToString())
                v.capacity = _capacity(v, requests[v.model], args)
            reference = variants[0].capacity
            timeout_ms = args.slo_ms if args.model == "cpu-mlp" else 0.0
            loadavg = [os.getloadavg()[0]]
            for r in range(args.rounds):
                for i, load in enumerate(loads):
                    order = variants[(r + i) % len(variants):] + variants[:(r + i) % len(variants)]
                    for v in order:
                        out = _generate(v.address, requests[v.model], args.clients, args.duration,
                                        rate=load * reference, timeout_ms=timeout_ms, seed=r * 100 + i)
                        v.rounds.setdefault(load, []).append(out)
                        loadavg.append(os.getloadavg()[0])
                print(f"round {r + 1}/{args.rounds} done, load average {loadavg[-1]:.1f}", file=sys.stderr,
                      flush=True)
        finally:
            for server in servers:
                server.stop()

    what = (f"null backend sleep {args.sleep_ms:g} ms, SLO {args.slo_ms:g} ms" if args.model == "sleep" else
            f"MLP {'-'.join(map(str, MLP_SIZES))} on the CPU backend, gRPC deadline {args.slo_ms:g} ms")
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC  {what}; "
          f"{args.duration:g} s of arrivals per point, {args.rounds} round(s), {args.clients} generator process(es), "
          f"{os.cpu_count()} cores, load average {min(loadavg):.1f}-{max(loadavg):.1f}")
    print("# capacity (closed loop, concurrency 4): "
          + ", ".join(f"{v.label} {v.capacity:.0f}/s" for v in variants)
          + f"; loads are multiples of {variants[0].label}'s\n")
    print("| variant | load | offered/s | goodput/s | goodput/capacity | late | refused | p50 ms | p99 ms | "
          "client cpu | send lag p99 ms | errors (most common) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for v in variants:
        for load in loads:
            print(_cells(v, load, reference, slo_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
