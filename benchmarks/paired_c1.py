"""Concurrency 1, bwserve against the obvious server, in short alternating blocks.

``serving.py`` gives each server a run of 1000 requests in turn, so a point's
servers are measured seconds apart, and on this shared machine the load moves
in seconds: its per-round ratios at concurrency 1 spread over 0.6-1.6. Here
one client sends each server a block of ``--block`` back-to-back requests
(after one uncounted request that switches it over), then the next server, in
a rotated order, so the servers' blocks are tens of milliseconds apart and
drift cancels within each set of blocks. Each block's p50 is divided by the
obvious server's in the same set; the median of those ratios, with a bootstrap
95% interval, is the comparison. A second bwserve process and a second obvious
process run beside them as A/A controls: how far two identical servers land
from each other is the resolution of the method. Servers are started afresh
each round (``serving.py --restart`` says why). ``--before TREE`` adds a fifth
server, bwserve served from another checkout (a commit before a change), so that
a change's cost at concurrency 1 is measured in the same blocks.

``--client`` picks the clients (default both, in alternating blocks within each
set): ``aio``, a ``grpc.aio`` stub sending one pre-built request; ``sync``,
tritonclient's synchronous ``InferenceServerClient.infer`` (the client most users
call; it builds its request each call, the same cost for every server). A
synchronous client blocks between requests, so each one reaches an idle server.
``--think-ms`` sleeps between requests (outside the timing), long enough for the
event loop and onnxruntime's spinning pool threads to go to sleep: the wake-up
from idle then counts in every request. ``--deadline-ms`` gives every request a gRPC
deadline (bwserve then checks it at the door and when it claims the inline path); a call
past it (a stall of this shared machine) is timed as it ran and counted per server.

    .venv/bin/python benchmarks/paired_c1.py [--rounds 4] [--blocks 50] [--block 20] [--before TREE]
        [--client aio sync] [--think-ms 0] [--deadline-ms MS]
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from baselines import launch
from protos import inference_pb2_grpc as pb_grpc
from serve.client import build_request
from serve.repository import ModelRepository
from serving import (check_outputs, deploy_models, describe_tree, model_path, random_inputs,
                     reference_outputs, server_command)

SERVERS = ["obvious", "bwserve", "obvious-twin", "bwserve-twin"]  # the first is every ratio's baseline
BEFORE = "bwserve-before"  # --before: bwserve from another checkout
CLIENTS = ("aio", "sync")


def sync_caller(address: str, model: str, inputs: dict[str, np.ndarray], timeout: float | None = None):
    """tritonclient's synchronous client as a coroutine that never suspends (it blocks), and its closer."""
    import tritonclient.grpc as triton
    from tritonclient.utils import np_to_triton_dtype

    client = triton.InferenceServerClient(address)
    tensors = []
    for name, array in inputs.items():
        tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)

    async def call() -> None:
        client.infer(model, tensors, client_timeout=timeout)

    return call, client.close


def _late(exc: Exception) -> bool:
    """Whether a call failed for its deadline (grpc.aio's error or tritonclient's)."""
    code = exc.code() if isinstance(exc, grpc.RpcError) else getattr(exc, "status", lambda: None)()
    return "DEADLINE_EXCEEDED" in str(code)


async def _call(call, late: list[int], server: int) -> None:
    """One call; past its deadline (a stall of the machine), counted against ``server`` and timed as it is."""
    try:
        await call()
    except Exception as exc:
        if not _late(exc):
            raise
        late[server] += 1


async def blocks(addresses: list[str], request, model: str, inputs, clients: list[str], count: int,
                 size: int, warmup: int, think_s: float = 0.0,
                 timeout: float | None = None) -> tuple[np.ndarray, list[int]]:
    """Latencies (s), shaped (blocks, clients, servers, size): block b visits every server once per client;
    and the calls per server that failed for their deadline."""
    late = [0] * len(addresses)
    channels = [grpc.aio.insecure_channel(a) for a in addresses]
    closers = []
    try:
        calls = []
        for kind in clients:
            if kind == "aio":
                stubs = [pb_grpc.GRPCInferenceServiceStub(c) for c in channels]
                calls.append([lambda stub=stub: stub.ModelInfer(request, timeout=timeout) for stub in stubs])
            else:
                pairs = [sync_caller(a, model, inputs, timeout) for a in addresses]
                calls.append([call for call, _ in pairs])
                closers += [close for _, close in pairs]
        for per_server in calls:
            for i, call in enumerate(per_server):
                for _ in range(warmup):
                    await _call(call, late, i)
        out = np.empty((count, len(clients), len(addresses), size))
        order = list(range(len(addresses)))
        for b in range(count):
            for k in (range(len(clients)) if b % 2 == 0 else reversed(range(len(clients)))):  # alternate
                for i in order[b % len(order):] + order[:b % len(order)]:  # rotate who goes first
                    call = calls[k][i]
                    await _call(call, late, i)  # switches this server from idle to busy; not counted
                    for j in range(size):
                        t0 = time.perf_counter()
                        await _call(call, late, i)
                        out[b, k, i, j] = time.perf_counter() - t0
                        if think_s:
                            time.sleep(think_s)  # blocking: nothing of the client's runs meanwhile
        return out, late
    finally:
        for close in closers:
            close()
        for channel in channels:
            await channel.close()


def interval(ratios: np.ndarray, rng: np.random.Generator, draws: int = 2000) -> tuple[float, float]:
    """Bootstrap 95% interval of the median."""
    medians = np.median(rng.choice(ratios, (draws, len(ratios))), axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def report(model: str, latencies: np.ndarray, rounds: list[float]) -> list[str]:
    p50 = np.median(latencies, axis=2)  # (blocks, servers)
    ratios = p50 / p50[:, :1]
    rng = np.random.default_rng(0)
    lines = []
    for i, name in enumerate(SERVERS):
        pooled = latencies[:, i, :].ravel() * 1e6
        if i == 0:
            cells = "1 | - | - | -"
        else:
            low, high = interval(ratios[:, i], rng)
            per_round = ", ".join(f"{r:.2f}" for r in rounds[i])
            cells = (f"{np.median(ratios[:, i]):.3f} | {low:.3f}-{high:.3f} | "
                     f"{np.mean(ratios[:, i] < 1):.2f} | {per_round}")
        lines.append(f"| {model} | {name} | {np.percentile(pooled, 50):.0f} | {np.percentile(pooled, 99):.0f} | "
                     f"{cells} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="server restarts (default %(default)s)")
    parser.add_argument("--blocks", type=int, default=50, help="sets of blocks per round (default %(default)s)")
    parser.add_argument("--block", type=int, default=20, help="requests per block (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured requests per server per round")
    parser.add_argument("--before", help="a bwserve checkout to serve as a fifth server, bwserve-before")
    parser.add_argument("--client", nargs="+", choices=CLIENTS, default=list(CLIENTS),
                        help="client kinds, in alternating blocks (default %(default)s)")
    parser.add_argument("--think-ms", type=float, default=0.0,
                        help="idle time between a block's requests, not counted (default %(default)s)")
    parser.add_argument("--deadline-ms", type=float, help="a gRPC deadline on every request (default none)")
    args = parser.parse_args()
    if args.before:
        SERVERS.append(BEFORE)

    started = datetime.datetime.now().isoformat(timespec="minutes")
    loads = []
    lates = []  # per round, the calls per server that failed for their deadline
    rows = []
    with tempfile.TemporaryDirectory(prefix="bwserve-paired-") as tmp:
        work = Path(tmp)
        repo = ModelRepository(work / "repo")
        configs = deploy_models(repo, work)
        for model, config in configs.items():
            inputs = random_inputs(config)
            request = build_request(model, inputs)
            expected = reference_outputs(config, model_path(repo, model), inputs)  # fast but wrong: not measured
            runs = []
            for r in range(args.rounds):
                servers = []
                try:
                    for name in SERVERS:
                        port = launch.free_port()
                        # serving.py's server_command knows bwserve's twin, not the obvious server's or BEFORE
                        kind = {"obvious-twin": "obvious", BEFORE: "bwserve"}.get(name, name)
                        command = server_command(kind, repo, model, port)
                        if name == BEFORE:  # that tree's code first on the path (python -P: not the cwd's)
                            command = ["env", f"PYTHONPATH={args.before}", sys.executable, "-P", "-m",
                                       "serve.cli"] + command[1:]
                        servers.append(launch.start(name, command, port, request, work / f"{name}-{model}.log"))
                        check_outputs(servers[-1].address, request, expected)
                    out, late = asyncio.run(blocks([s.address for s in servers], request, model, inputs,
                                                   args.client, args.blocks, args.block, args.warmup,
                                                   args.think_ms / 1e3, args.deadline_ms and args.deadline_ms / 1e3))
                    runs.append(out)
                    lates.append(late)
                finally:
                    for server in servers:
                        server.stop()
                loads.append(os.getloadavg()[0])
                p50 = np.median(runs[-1], axis=3)
                for k, kind in enumerate(args.client):
                    print(f"{model} {kind} round {r + 1}/{args.rounds}, load {loads[-1]:.2f}: "
                          + ", ".join(f"{n} {np.median(p50[:, k, i] / p50[:, k, 0]):.3f}"
                                      for i, n in enumerate(SERVERS)), flush=True)
            for k, kind in enumerate(args.client):
                latencies = np.concatenate([run[:, k] for run in runs])
                per_round = [[float(np.median(np.median(run[:, k, i], axis=1) / np.median(run[:, k, 0], axis=1)))
                              for run in runs] for i in range(len(SERVERS))]
                rows += report(f"{model} | {kind}", latencies, per_round)
    print(f"\n{started}, {describe_tree()}, {os.cpu_count()} cores, load average {min(loads):.1f}-{max(loads):.1f}; "
          f"{args.rounds} rounds x {args.blocks} sets of blocks x {args.block} requests per server and client"
          + (f", {args.think_ms:g} ms between requests" if args.think_ms else "")
          + (f", {args.deadline_ms:g} ms deadlines; calls past them (timed as they ran): "
             + ", ".join(f"{n} {sum(r[i] for r in lates)}" for i, n in enumerate(SERVERS)) if args.deadline_ms else "")
          + "\n")
    print("| model | client | server | p50 us | p99 us | block p50 / obvious's, median | 95% interval | "
          "blocks faster | per round |")
    print("|---|---|---|---:|---:|---:|---|---:|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
