"""Admission control under open-loop overload: a slow sleep model, or a fast CPU-bound one.

``--model sleep`` (issues 3): one server process serves the same null/sleep
model twice, ``adm`` with admission control and ``fifo`` without (plain FIFO,
bounded only by a large queue); requests carry no deadline, the model's SLO is
theirs.

``--model cpu-mlp`` (issue 22): an MLP 784-2048-2048-2048-10 on the CPU backend,
about 1 ms a request, where the Python front end (gRPC, the event loop, decode)
costs as much as the model. Each variant (``--variant "LABEL=THREADS:KEY=VALUE,...
[pinned] [clients=N] [--serve-flag ...]"``, several) is the same model with other CPU
options (and ``serve start`` flags), served by its own ``serve start`` process; every
request carries a gRPC deadline of ``--slo-ms``. ``clients=N`` drives that variant
with N generator processes instead of ``--clients``. ``pinned`` runs that server on core 0
only and its generators on core 1 only (taskset), capacity runs included: the
client then takes no CPU from the server, so comparing a pinned variant with its
unpinned twin says how much of the drop under overload is the client's.

Both: the load comes from ``--clients`` generator processes (benchmarks/loadgen.py,
or with ``--generator cc`` benchmarks/loadgen.cc, the same in C++ at a third of
the CPU a call), never from this process or the server's. Each variant's capacity is measured
first, in the same run, with the same generator (closed loop, concurrency 4,
as issue 3 measured it; the median of 3 runs, variants interleaved); the first
variant's capacity is the reference that every offered load is a multiple of.
Then every point (load x variant, variants in a rotated order) runs
``--rounds`` times, interleaved, and the table gives
per-round medians: goodput (requests answered within the SLO at the client,
per second), late (DEADLINE_EXCEEDED at the client, share of those sent),
refused (RESOURCE_EXHAUSTED / UNAVAILABLE / CANCELLED, share of those sent), and
p50/p99 of the served requests pooled over rounds. Each round measures every
variant's capacity again first (the machine is shared: what it sustains drifts
from minute to minute), and ``goodput/capacity`` divides each round's goodput
by the variant's own capacity of that round; ``offered/capacity`` is the
offered rate over that capacity (the median over rounds), the overload each
variant really had, since the loads are multiples of the first variant's first
reading. With ``--capacity-per-point`` each point measures its variant's
capacity right before it and right after it (``--capacity-s`` twice more per
point), offers that many times the reading before, and divides its goodput by
the mean of the two: the first reading of a fresh server can be a quarter low
even after a warm-up run, and on the MLP one server's readings 4 s apart
ranged over 879-1,340/s (benchmarks/README.md, session 12). CPU, in cores (CPU seconds per second of
the point, from /proc): ``client`` the generators', ``server`` the server
process's, ``loop`` its main thread's (the event loop, where grpc.aio
and every refusal run), ``machine`` everything on the machine (other people's
work included); ``server wait`` is how long the server's threads were ready to
run but waited for a core (schedstat), per second.

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
from proc_cpu import cpu_seconds  # noqa: E402
from models.convert.onnx_io import finalize  # noqa: E402
from serve.client import build_request  # noqa: E402
from serve.deploy import prepare  # noqa: E402
from serve.repository import ModelRepository  # noqa: E402

LOADGEN = ROOT / "benchmarks" / "loadgen.py"
LOADGEN_CC = ROOT / "benchmarks" / "loadgen.cc"
MLP_SIZES = (784, 2048, 2048, 2048, 10)
# The CPU variants the issue measured: onnxruntime's defaults, one thread, no spinning.
CPU_VARIANTS = ("default=0:", "threads-1=1:", "no-spin=0:spinning=0")
SERVER_CPUS, CLIENT_CPUS = "0", "1"  # a pinned variant's cores (taskset -c)


@dataclass
class Variant:
    label: str
    model: str  # its name in the repository
    tree: str = ""  # a checkout of bwserve to serve it from (a commit before a change); "": this one
    address: str = ""
    flags: tuple[str, ...] = ()  # extra ``serve start`` arguments
    capacity: float = 0.0  # closed loop, requests/s, measured before the first round
    capacities: list[float] = field(default_factory=list)  # the same, measured again each round (or point)
    pid: int = 0  # the server process
    pinned: bool = False  # server on core 0, its generators on core 1
    clients: int = 0  # generator processes; 0: --clients
    rounds: dict[float, list[dict]] = field(default_factory=dict)  # load -> one merged result per round


def echo_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "echo", [x], [y])
    return finalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))


def _sleep_repo(root: Path, args) -> tuple[list[Variant], dict[str, np.ndarray]]:
    source = root / "echo.onnx"
    onnx.save(echo_model(), source)
    repo = ModelRepository(root / "repo")
    variants = []
    for label, name, admission in (("admission", "adm", True), ("FIFO", "fifo", False)):
        prepared = prepare([source], name=name, backend="null", slo_ms=args.slo_ms,
                           backend_options={"sleep_ms": str(args.sleep_ms)})
        repo.add(prepared.config.replace(admission_control=admission, max_queue_size=args.max_queue,
                                         warmup_runs=5), prepared.model_bytes)
        variants.append(Variant(label, name))
    return variants, {"x": np.random.default_rng(0).random((1, 16), dtype=np.float32)}


def _parse_variant(text: str) -> tuple[str, int, dict[str, str], str, tuple[str, ...]]:
    """LABEL=THREADS:KEY=VALUE,...[@TREE] [pinned] [clients=N] [FLAG...] -> (label, threads, backend options,
    tree, flags); "pinned" and "clients=N" are among the flags if given."""
    text, *flags = text.split()
    text, _, tree = text.partition("@")
    label, _, rest = text.partition("=")
    threads, _, options = rest.partition(":")
    pairs = dict(item.split("=", 1) for item in options.split(",") if item)
    return label, int(threads or 0), pairs, tree, tuple(flags)


def _mlp_repo(root: Path, args) -> tuple[list[Variant], dict[str, np.ndarray]]:
    from models.examples import mlp

    source = root / "mlp.onnx"
    onnx.save(mlp.build(MLP_SIZES), source)
    repo = ModelRepository(root / "repo")
    variants = []
    for index, text in enumerate(args.variant or CPU_VARIANTS):
        label, threads, options, tree, flags = _parse_variant(text)
        name = f"mlp{index}"
        prepared = prepare([source], name=name, backend="cpu", threads=threads, backend_options=options)
        repo.add(prepared.config.replace(max_queue_size=args.max_queue), prepared.model_bytes)
        clients = [int(f.partition("=")[2]) for f in flags if f.startswith("clients=")]
        serve_flags = tuple(f for f in flags if f != "pinned" and not f.startswith("clients="))
        variants.append(Variant(label, name, tree, flags=serve_flags, pinned="pinned" in flags,
                                clients=clients[0] if clients else 0))
    return variants, {"input": np.random.default_rng(0).random((1, MLP_SIZES[0]), dtype=np.float32)}


def start_server(repo: Path, models: list[str], inputs: dict[str, np.ndarray], log: Path,
           tree: str = "", flags: tuple[str, ...] = (), cpus: str = "") -> launch.Running:
    """``serve start`` for ``models`` with ``flags``; from ``tree`` (python -P, that tree on PYTHONPATH) if given,
    on the cores ``cpus`` (taskset's list) if given."""
    port = launch.free_port()
    command = launch.bwserve(repo, models[0], port) + [a for m in models[1:] for a in ("--model", m)] + list(flags)
    if tree:
        tree, *env = tree.split("#")
        command = ["env", f"PYTHONPATH={tree}", *env, sys.executable, "-P", "-m", "serve.cli"] + command[1:]
    if cpus:
        command = ["taskset", "-c", cpus] + command
    return launch.start(models[0], command, port, build_request(models[0], inputs), log)


def build_loadgen_cc(cache: Path = ROOT / ".cache" / "loadgen") -> Path:
    """benchmarks/loadgen.cc compiled into ``cache`` (again whenever the source is newer); needs g++ and
    Debian's libgrpc++-dev."""
    binary = cache / "loadgen"
    if binary.exists() and binary.stat().st_mtime >= LOADGEN_CC.stat().st_mtime:
        return binary
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "grpc++"], capture_output=True, text=True)
    if flags.returncode:
        raise SystemExit("--generator cc needs gRPC's C++ library: apt-get install libgrpc++-dev "
                         f"(pkg-config: {flags.stderr.strip()})")
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(["g++", "-O2", "-std=c++17", str(LOADGEN_CC), *flags.stdout.split(), "-o", str(binary)],
                   check=True)
    return binary


def generate(address: str, request: Path, clients: int, duration: float, *, rate: float = 0.0,
              concurrency: int = 4, timeout_ms: float = 0.0, seed: int = 0, pid: int, cpus: str = "",
              generator: tuple[str, ...] = (sys.executable, str(LOADGEN))) -> dict:
    """Run ``clients`` generator processes (the command ``generator``) together (on the cores ``cpus`` if
    given); their results merged, with the CPU that the server ``pid`` (its main thread, the machine) used
    while they ran, in cores."""
    start_at = time.time() + 1.0  # after every generator has connected and warmed up
    procs = []
    for i in range(clients):
        command = ["taskset", "-c", cpus] if cpus else []
        command += [*generator, address, str(request), "--duration", str(duration),
                   "--seed", str(seed * 1000 + i), "--start-at", str(start_at), "--timeout-ms", str(timeout_ms)]
        command += ["--rate", str(rate / clients)] if rate else ["--concurrency", str(concurrency)]
        procs.append(subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True))
    time.sleep(max(0.0, start_at - time.time()))
    before = cpu_seconds(pid)
    time.sleep(duration)
    server, loop, machine, waited = ((b - a) / duration for a, b in zip(before, cpu_seconds(pid)))
    outs = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=duration + 120)
        if proc.returncode:
            raise RuntimeError(f"load generator exited with {proc.returncode}")
        outs.append(json.loads(stdout))
    return {"latencies_s": [x for o in outs for x in o["latencies_s"]],
            "errors": sum((Counter(o["errors"]) for o in outs), Counter()),
            "wall_s": max(o["wall_s"] for o in outs), "sent": sum(o["sent"] for o in outs),
            "cpu_s": sum(o["cpu_s"] for o in outs), "lag_p99_ms": max(o["lag_p99_ms"] for o in outs),
            "server_cpu": server, "loop_cpu": loop, "machine_cpu": machine, "server_wait": waited}


def _capacity(variant: Variant, request: Path, args) -> float:
    out = generate(variant.address, request, 1, args.capacity_s, concurrency=4, pid=variant.pid,
                    cpus=CLIENT_CPUS if variant.pinned else "", generator=args.generator)
    return len(out["latencies_s"]) / out["wall_s"]


def _cells(variant: Variant, load: float, slo_s: float) -> str:
    rounds = variant.rounds[load]
    good, share, offered, over, late, refused, cpu = [], [], [], [], [], [], []
    kinds: Counter = Counter()
    for r in rounds:
        capacity = r["capacity"]
        lat = np.asarray(r["latencies_s"])
        good.append(int((lat <= slo_s).sum()) / r["wall_s"])
        share.append(good[-1] / capacity)
        offered.append(r["rate"])
        over.append(r["rate"] / capacity)
        late_n = sum(v for k, v in r["errors"].items() if k.startswith("DEADLINE_EXCEEDED"))
        late.append(late_n / max(1, r["sent"]))
        refused.append((sum(r["errors"].values()) - late_n) / max(1, r["sent"]))
        cpu.append((r["cpu_s"] / r["wall_s"], r["server_cpu"], r["loop_cpu"], r["server_wait"], r["machine_cpu"]))
        kinds.update(r["errors"])
    served = np.concatenate([np.asarray(r["latencies_s"]) for r in rounds])
    p50, p99 = (np.percentile(served, [50, 99]) * 1e3) if len(served) else (np.nan, np.nan)
    top = "; ".join(f"{k} {v}" for k, v in kinds.most_common(3)) or "-"
    cores = " | ".join(f"{x:.2f}" for x in np.median(cpu, axis=0))
    return (f"| {variant.label} | {load:g}x | {np.median(offered):.0f} | {np.median(over):.1f}x | "
            f"{np.median(good):.0f} | "
            f"{np.median(share):.0%} ({min(share):.0%}-{max(share):.0%}) | "
            f"{np.median(late):.1%} | {np.median(refused):.1%} | {p50:.1f} | {p99:.1f} | {cores} | "
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
    parser.add_argument("--capacity-per-point", action="store_true",
                        help="measure each variant's capacity again right before and after each of its "
                             "points, not once a round; offer the load as a multiple of the reading before "
                             "and divide that point's goodput by the mean of the two")
    parser.add_argument("--clients", type=int, default=1, help="load generator processes")
    parser.add_argument("--generator", choices=("py", "cc"), default="py",
                        help="py: benchmarks/loadgen.py (grpc.aio); cc: benchmarks/loadgen.cc (gRPC's C++ "
                             "library, a third of the CPU a call; built on first use, needs libgrpc++-dev)")
    parser.add_argument("--max-queue", type=int, default=4096, help="max_queue_size of every model")
    args = parser.parse_args(argv)
    loads = [float(x) for x in args.loads.split(",")]
    args.generator = (str(build_loadgen_cc()),) if args.generator == "cc" else (sys.executable, str(LOADGEN))
    slo_s = args.slo_ms / 1e3

    with tempfile.TemporaryDirectory(prefix="bwserve-admission-") as tmp:
        work = Path(tmp)
        variants, inputs = (_sleep_repo if args.model == "sleep" else _mlp_repo)(work, args)
        servers = []
        try:
            if args.model == "sleep":  # both models in one process, as issue 3 measured
                servers.append(start_server(work / "repo", [v.model for v in variants], inputs, work / "server.log"))
                for v in variants:
                    v.address, v.pid = servers[0].address, servers[0].process.pid
            else:
                for v in variants:
                    servers.append(start_server(work / "repo", [v.model], inputs, work / f"{v.model}.log", v.tree,
                                          v.flags, SERVER_CPUS if v.pinned else ""))
                    v.address, v.pid = servers[-1].address, servers[-1].process.pid
            requests = {}
            for v in variants:
                requests[v.model] = work / f"{v.model}.request"
                requests[v.model].write_bytes(build_request(v.model, inputs).SerializeToString())
            for v in variants:  # a server's first seconds under load read low (inline runs, a cold cache)
                _capacity(v, requests[v.model], args)
            first = [[_capacity(v, requests[v.model], args) for v in variants] for _ in range(3)]
            for v, runs in zip(variants, zip(*first)):
                v.capacity = float(np.median(runs))
            reference = variants[0].capacity
            timeout_ms = args.slo_ms if args.model == "cpu-mlp" else 0.0
            loadavg = [os.getloadavg()[0]]
            for r in range(args.rounds):
                if not args.capacity_per_point:
                    for v in variants[r % len(variants):] + variants[:r % len(variants)]:
                        v.capacities.append(_capacity(v, requests[v.model], args))
                for i, load in enumerate(loads):
                    order = variants[(r + i) % len(variants):] + variants[:(r + i) % len(variants)]
                    for v in order:
                        if args.capacity_per_point:
                            v.capacities.append(_capacity(v, requests[v.model], args))
                        rate = load * (v.capacities[-1] if args.capacity_per_point else reference)
                        out = generate(v.address, requests[v.model], v.clients or args.clients, args.duration,
                                        rate=rate, timeout_ms=timeout_ms, seed=r * 100 + i, pid=v.pid,
                                        cpus=CLIENT_CPUS if v.pinned else "", generator=args.generator)
                        out["rate"], out["capacity"] = rate, v.capacities[-1]  # offered; what goodput is a share of
                        if args.capacity_per_point:  # bracketed: the mean of the readings before and after
                            v.capacities.append(_capacity(v, requests[v.model], args))
                            out["capacity"] = (out["capacity"] + v.capacities[-1]) / 2
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
    print("# capacity (closed loop, concurrency 4), first and "
          + ("before and after each point: " if args.capacity_per_point else "in each round: ")
          + "; ".join(f"{v.label} {v.capacity:.0f}/s ({', '.join(f'{c:.0f}' for c in v.capacities)})"
                      for v in variants)
          + ("; loads are multiples of the capacity before each point\n" if args.capacity_per_point
             else f"; loads are multiples of {variants[0].label}'s first\n"))
    print("| variant | load | offered/s | offered/capacity | goodput/s | goodput/capacity (range) | late | refused | "
          "p50 ms | p99 ms | client cpu | server cpu | loop cpu | server wait | machine cpu | send lag p99 ms | "
          "errors (most common) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for v in variants:
        for load in loads:
            print(_cells(v, load, slo_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
