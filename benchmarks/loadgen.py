"""A load generator in its own process: open-loop Poisson or closed-loop ModelInfer calls.

``benchmarks/admission.py`` starts one or more of these next to the server, so
that the client's Python does not run in the benchmark's own process, and
reads one JSON line from each. The request is sent as pre-serialized bytes and
the response is not parsed, to keep the client's cost per request small; what
it still costs is reported (``cpu_s``: this process's CPU seconds over the run,
``lag_p99_ms``: how late the 99th percentile send left against its Poisson
schedule), so a run can say how much of the machine the client took.

Both start at ``--start-at`` (a ``time.time()``, so that several generators,
and whoever reads the server's CPU meanwhile, start together) and run for
``--duration`` seconds. Open loop: Poisson arrivals at ``--rate`` per second;
each latency runs from its scheduled send time. Closed loop: ``--concurrency``
callers back to back. ``--timeout-ms`` gives every call a gRPC deadline.

    python benchmarks/loadgen.py ADDRESS REQUEST_FILE (--rate R | --concurrency C) [--timeout-ms T]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def _kind(exc: grpc.aio.AioRpcError) -> str:
    """The status and the first words of its message: which stage refused it."""
    words = (exc.details() or "").split()
    return f"{exc.code().name}: {' '.join(words[:4])}"


async def _open(call, payload: bytes, rate: float, duration: float, timeout: float | None, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, int(rate * duration * 1.5) + 100)
    offsets = np.cumsum(gaps)
    offsets = offsets[offsets <= duration]
    latencies: list[float] = []
    lags: list[float] = []
    errors: Counter = Counter()

    async def one(due: float) -> None:
        lags.append(time.perf_counter() - due)
        try:
            await call(payload, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            errors[_kind(exc)] += 1
            return
        latencies.append(time.perf_counter() - due)

    start = time.perf_counter()
    tasks = []
    for offset in offsets:
        due = start + offset
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(due)))
    await asyncio.gather(*tasks)
    return {"latencies_s": latencies, "errors": errors, "wall_s": time.perf_counter() - start,
            "sent": len(offsets), "lag_p99_ms": float(np.percentile(lags, 99) * 1e3) if lags else 0.0}


async def _closed(call, payload: bytes, concurrency: int, duration: float, timeout: float | None) -> dict:
    latencies: list[float] = []
    errors: Counter = Counter()
    stop_at = time.perf_counter() + duration

    async def caller() -> None:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                await call(payload, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                errors[_kind(exc)] += 1
                continue
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    return {"latencies_s": latencies, "errors": errors, "wall_s": wall, "sent": len(latencies) + sum(errors.values()),
            "lag_p99_ms": 0.0}


async def _main(args) -> dict:
    payload = Path(args.request).read_bytes()
    async with grpc.aio.insecure_channel(args.address) as channel:
        call = channel.unary_unary(METHOD)  # bytes in, bytes out: nothing (de)serialized here
        for _ in range(args.warmup):
            await call(payload)
        await asyncio.sleep(max(0.0, args.start_at - time.time()))
        cpu0 = time.process_time()
        timeout = args.timeout_ms / 1e3 if args.timeout_ms else None
        if args.rate:
            out = await _open(call, payload, args.rate, args.duration, timeout, args.seed)
        else:
            out = await _closed(call, payload, args.concurrency, args.duration, timeout)
        out["cpu_s"] = time.process_time() - cpu0
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("address")
    parser.add_argument("request", help="a serialized ModelInferRequest")
    parser.add_argument("--rate", type=float, default=0.0, help="open loop: Poisson arrivals per second")
    parser.add_argument("--concurrency", type=int, default=4, help="closed loop (without --rate)")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--timeout-ms", type=float, default=0.0, help="gRPC deadline of each request (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-at", type=float, default=0.0, help="time.time() to start at")
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args(argv)
    out = asyncio.run(_main(args))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
