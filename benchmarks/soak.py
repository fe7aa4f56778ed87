"""Soak: hours of service compressed into minutes, watched for leaks and drift (issue 7).

Starts `serve start` as its own process with two models (the built-in digits
classifier and an MLP 784-512-512-10), then sends a fixed rate of mixed requests
from this process: valid ones to both models and invalid ones of three kinds
(wrong shape, unknown model, wrong datatype). Every interval it prints the
server's resident memory and open file descriptors (from /proc), latency
percentiles of the valid requests, and responses by status code. Bounded by
--duration; loopback only.

    .venv/bin/python benchmarks/soak.py --duration 600 --interval 60 --rate 200
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import grpc
import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import launch  # noqa: E402

from models.examples import digits, mlp  # noqa: E402
from protos import inference_pb2_grpc as pb_grpc  # noqa: E402
from serve.client import CHANNEL_OPTIONS, build_request  # noqa: E402
from serve.deploy import prepare  # noqa: E402
from serve.repository import ModelRepository  # noqa: E402


def requests() -> dict[str, tuple[object, bool]]:
    """Request kind -> (prebuilt request, valid?)."""
    rng = np.random.default_rng(0)
    return {
        "digits": (build_request("digits", {"pixels": rng.random((1, 64)).astype(np.float32) * 16}), True),
        "mlp": (build_request("mlp", {"input": rng.random((1, 784)).astype(np.float32)}), True),
        "bad-shape": (build_request("mlp", {"input": rng.random((1, 783)).astype(np.float32)}), False),
        "unknown-model": (build_request("nope", {"input": rng.random((1, 784)).astype(np.float32)}), False),
        "bad-dtype": (build_request("digits", {"pixels": rng.random((1, 64))}), False),  # FP64
    }


def process_stats(pid: int) -> tuple[float, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


async def soak(address: str, pid: int, rate: float, duration: float, interval: float) -> None:
    kinds = requests()
    names = list(kinds)
    weights = np.array([0.4, 0.4, 0.07, 0.07, 0.06])
    rng = np.random.default_rng(1)
    latencies: list[float] = []
    codes: Counter = Counter()
    print("| minute | rss MiB | fds | valid p50 ms | valid p99 ms | requests | by status |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        async def one(kind: str) -> None:
            request, valid = kinds[kind]
            t0 = time.perf_counter()
            try:
                await stub.ModelInfer(request, timeout=10)
                codes["OK"] += 1
                if valid:
                    latencies.append(time.perf_counter() - t0)
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1

        start = time.perf_counter()
        next_at, report_at, pending = start, start + interval, set()
        while next_at - start < duration:
            next_at += rng.exponential(1 / rate)
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            task = asyncio.ensure_future(one(str(rng.choice(names, p=weights))))
            pending.add(task)
            task.add_done_callback(pending.discard)
            if time.perf_counter() >= report_at:
                rss, fds = process_stats(pid)
                lat = np.array(latencies) * 1e3
                print(f"| {(report_at - start) / 60:.1f} | {rss:.1f} | {fds} | {np.percentile(lat, 50):.2f} | "
                      f"{np.percentile(lat, 99):.2f} | {sum(codes.values())} | "
                      f"{', '.join(f'{k} {v}' for k, v in sorted(codes.items()))} |", flush=True)
                latencies.clear()
                codes.clear()
                report_at += interval
        await asyncio.gather(*pending)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds per reported row")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second, Poisson")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo = ModelRepository(work / "repo")
        onnx.save(digits.train().model, work / "digits.onnx")
        onnx.save(mlp.build(), work / "mlp.onnx")
        for name in ("digits", "mlp"):
            prepared = prepare([work / f"{name}.onnx"], name=name)
            repo.add(prepared.config, prepared.model_bytes)
        port = launch.free_port()
        command = [str(Path(sys.executable).parent / "serve"), "start", "--repo", str(repo.root),
                   "--port", str(port), "--metrics-port", "0"]
        server = launch.start("bwserve", command, port, requests()["digits"][0], work / "server.log")
        try:
            print(f"soak: {args.rate:g} requests/s for {args.duration:g} s, 80% valid; server pid {server.process.pid}")
            asyncio.run(soak(server.address, server.process.pid, args.rate, args.duration, args.interval))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
