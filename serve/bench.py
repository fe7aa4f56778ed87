"""Batch-1 load over gRPC: closed loop (C clients back to back) or open loop (Poisson).

One asyncio client pre-builds the request once and sends it from C concurrent
tasks, so the client's own per-request cost stays small and identical for every
server it is pointed at (the benchmarks compare servers with this same client).
Every run is bounded by a request count and a duration.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
import numpy as np

from protos import inference_pb2 as pb
from protos import inference_pb2_grpc as pb_grpc
from serve.client import channel_options

PERCENTILES = (50, 90, 99, 99.9)


@dataclass
class LoadResult:
    latencies_s: np.ndarray  # of successful requests
    errors: Counter = field(default_factory=Counter)  # status code name -> count
    wall_s: float = 0.0

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s else 0.0

    def percentile_us(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1e6) if len(self.latencies_s) else math.nan

    def summary(self) -> dict[str, float]:
        row = {f"p{q:g}_us": self.percentile_us(q) for q in PERCENTILES}
        row["throughput_rps"] = self.throughput
        row["ok"] = len(self.latencies_s)
        row["errors"] = sum(self.errors.values())
        return row

    def format(self) -> str:
        s = self.summary()
        lines = [f"requests ok {s['ok']}, errors {s['errors']}"
                 + (f" ({', '.join(f'{k} {v}' for k, v in self.errors.most_common())})" if self.errors else ""),
                 "latency " + "  ".join(f"p{q:g} {s[f'p{q:g}_us'] / 1e3:.3f} ms" for q in PERCENTILES),
                 f"throughput {s['throughput_rps']:.1f} requests/s over {self.wall_s:.2f} s"]
        return "\n".join(lines)


async def _closed(stub, request, concurrency: int, requests: int, duration: float,
                  timeout: float | None) -> LoadResult:
    latencies: list[float] = []
    errors: Counter = Counter()
    remaining = [requests]
    stop_at = time.perf_counter() + duration

    async def worker() -> None:
        call = stub.ModelInfer
        while remaining[0] > 0 and time.perf_counter() < stop_at:
            remaining[0] -= 1
            t0 = time.perf_counter()
            try:
                await call(request, timeout=timeout)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] += 1
                continue
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(np.array(latencies), errors, time.perf_counter() - start)


async def _open(stub, request, rate: float, requests: int, duration: float,
                timeout: float | None, seed: int) -> LoadResult:
    latencies: list[float] = []
    errors: Counter = Counter()
    rng = np.random.default_rng(seed)

    async def one(sent_at: float) -> None:
        try:
            await stub.ModelInfer(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            errors[exc.code().name] += 1
            return
        latencies.append(time.perf_counter() - sent_at)

    tasks = []
    start = time.perf_counter()
    next_at = start
    for _ in range(requests):
        next_at += rng.exponential(1.0 / rate)
        if next_at - start > duration:
            break
        delay = next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(next_at)))
    await asyncio.gather(*tasks)
    return LoadResult(np.array(latencies), errors, time.perf_counter() - start)


def run_load(address: str, request: pb.ModelInferRequest, *, concurrency: int = 1,
             requests: int = 1000, duration: float = 60.0, rate: float | None = None,
             timeout: float | None = None, warmup: int = 20, seed: int = 0,
             authority: str | None = None, health_check: bool = False) -> LoadResult:
    """Send ``request`` until ``requests`` were sent or ``duration`` seconds passed.

    ``rate`` switches to open loop: Poisson arrivals at ``rate`` per second, each
    request's latency measured from its scheduled send time. ``timeout`` is the
    gRPC deadline each request carries. ``address`` may be any gRPC target, e.g.
    ``dns:///name:8001`` to balance over every address the name resolves to;
    ``authority`` sets the HTTP/2 ``:authority`` (an ingress's virtual host);
    ``health_check`` skips replicas whose grpc.health.v1 says NOT_SERVING (only when
    ``address`` resolves to the replicas themselves, not to a proxy).
    """
    options = channel_options(authority, health_check)

    async def main() -> LoadResult:
        async with grpc.aio.insecure_channel(address, options=options) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            for _ in range(warmup):
                await stub.ModelInfer(request)
            if rate is None:
                return await _closed(stub, request, concurrency, requests, duration, timeout)
            return await _open(stub, request, rate, requests, duration, timeout, seed)

    return asyncio.run(main())
