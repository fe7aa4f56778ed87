"""Encoding a batch-1 response as serving sees it: caches cold after an idle gap.

At concurrency 1 the server idles between requests (the client's round trip), so
each request's Python runs with cold caches and costs several times what a tight
loop says. This times ``Codec.encode`` right after a real ``session.run`` and a
sleep of ``--gap-ms`` per request, two ways in one run, alternating:

- **message**: the generic path, a ``ModelInferResponse`` built tensor by tensor,
  then ``SerializeToString`` (what gRPC would otherwise do after the handler);
- **bytes**: the fixed-signature path, the response serialized at load followed by
  the request id and raw output fields (serve/codec.py).

Both decode to the same message (tests/server/test_codec.py). For the MLP
784-512-512-10 and the built-in digits model.

    .venv/bin/python benchmarks/encode_cold.py [--requests 3000] [--gap-ms 1.5]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from backends.cpu import CpuBackend
from models.examples import digits, mlp
from serve.codec import Codec
from serve.deploy import prepare


def measure(model: onnx.ModelProto, requests: int, gap_s: float) -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "model.onnx"
        onnx.save(model, source)
        prepared = prepare([source], name="m")
        path = Path(tmp) / "prepared.onnx"
        path.write_bytes(prepared.model_bytes)
        config = prepared.config
        backend = CpuBackend(config, 0)
        backend.load(path)
    codec = Codec(config.inputs, config.outputs, "m", "1")
    rng = np.random.default_rng(0)
    inputs = {s.name: rng.random(s.shape).astype(np.float32) for s in config.inputs}
    every = tuple(s.name for s in config.outputs)  # naming the outputs takes the generic path
    ways = {"message": every, "bytes": None}
    times = {way: np.empty(requests // 2) for way in ways}
    for i in range(requests):
        way = ("message", "bytes")[i % 2]
        outputs = backend.run(inputs)
        time.sleep(gap_s)
        start = time.perf_counter_ns()
        codec.encode(outputs, ways[way], "req-1")
        times[way][i // 2] = (time.perf_counter_ns() - start) / 1e3
    backend.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="encodes per model, half each way")
    parser.add_argument("--gap-ms", type=float, default=1.5, help="idle time before each encode")
    args = parser.parse_args()
    print(f"{args.requests} encodes per model, {args.gap_ms} ms idle before each; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| model | way | p50 us | p99 us | p99.9 us | p50 / message |")
    print("|---|---|---:|---:|---:|---:|")
    for name, model in (("mlp", mlp.build()), ("digits", digits.train().model)):
        times = measure(model, args.requests, args.gap_ms / 1e3)
        base = np.percentile(times["message"], 50)
        for way, t in times.items():
            p50, p99, p999 = np.percentile(t, [50, 99, 99.9])
            print(f"| {name} | {way} | {p50:.1f} | {p99:.1f} | {p999:.1f} | {p50 / base:.2f} |")


if __name__ == "__main__":
    main()
