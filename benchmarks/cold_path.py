"""Per-request pieces of the CPU path as serving sees them: caches cold after an idle gap.

At concurrency 1 the server idles between requests (the client's round trip), so
each request's Python runs with cold caches and costs several times what a tight
loop says. Each comparison below alternates two ways of doing one step, after a
real ``session.run`` and a sleep of ``--gap-ms``, in one run:

- **encode**: ``message``, the generic path, a ``ModelInferResponse`` built tensor
  by tensor, then ``SerializeToString`` (what gRPC would otherwise do after the
  handler), against ``bytes``, the fixed-signature path, the response serialized at
  load followed by the request id and raw output fields (serve/codec.py; both decode
  to the same message, tests/server/test_codec.py);
- **decode**: ``codec``, bwserve's ``Codec.decode`` and ``check_requested`` (every check
  of the request against the signature), against ``frombuffer``, the obvious server's
  ``np.frombuffer(...).reshape(...)`` per input with no check, and ``parse``, the
  request's protobuf parse alone (done by gRPC before either handler runs);
- **run**: ``session.run`` (what backends/cpu.py does) against onnxruntime's IO
  binding with the output pre-bound to a buffer made once (``run_with_iobinding``),
  the issue's "pre-bound outputs where it helps".

For the MLP 784-512-512-10 and the built-in digits model.

    .venv/bin/python benchmarks/cold_path.py [--requests 3000] [--gap-ms 1.5]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort

from backends.cpu import CpuBackend
from models.examples import digits, mlp
from protos import inference_pb2 as pb
from serve.client import build_request
from serve.codec import Codec
from serve.datatypes import NUMPY
from serve.deploy import prepare


def alternate(ways: dict[str, Callable[[], object]], before: Callable[[], object], requests: int,
              gap_s: float) -> dict[str, np.ndarray]:
    """Microseconds per call of each way, taking turns, each after ``before()`` and an idle gap."""
    names = list(ways)
    times = {name: np.empty(requests // len(names)) for name in names}
    for i in range(requests // len(names) * len(names)):
        name = names[i % len(names)]
        before()
        time.sleep(gap_s)
        start = time.perf_counter_ns()
        ways[name]()
        times[name][i // len(names)] = (time.perf_counter_ns() - start) / 1e3
    return times


def compare(model: onnx.ModelProto, requests: int, gap_s: float) -> dict[str, dict[str, np.ndarray]]:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "model.onnx"
        onnx.save(model, source)
        prepared = prepare([source], name="m")
        path = Path(tmp) / "prepared.onnx"
        path.write_bytes(prepared.model_bytes)
        config = prepared.config
        backend = CpuBackend(config.spec(), 0)
        backend.load(path)
    session = backend.session
    rng = np.random.default_rng(0)
    inputs = {s.name: rng.random(s.shape).astype(np.float32) for s in config.inputs}
    names = [s.name for s in config.outputs]
    outputs = backend.run(inputs)

    codec = Codec(config.inputs, config.outputs, "m", "1")
    every = tuple(names)  # naming the outputs takes the generic path
    encode = {"message": lambda: codec.encode(outputs, every, "req-1"),
              "bytes": lambda: codec.encode(outputs, None, "req-1")}

    request = build_request("m", inputs)
    wire = request.SerializeToString()

    def decode_as_codec():
        codec.decode(request)
        codec.check_requested(request)

    def decode_as_obvious():
        {t.name: np.frombuffer(raw, dtype=NUMPY[t.datatype]).reshape(tuple(t.shape))
         for t, raw in zip(request.inputs, request.raw_input_contents)}

    decode = {"codec": decode_as_codec, "frombuffer": decode_as_obvious,
              "parse": lambda: pb.ModelInferRequest.FromString(wire)}

    binding = session.io_binding()
    bound = {n: np.empty_like(outputs[n]) for n in names}
    for name, array in bound.items():
        binding.bind_output(name, "cpu", 0, array.dtype, array.shape, array.ctypes.data)
    options = ort.RunOptions()

    def run_bound():
        for name, array in inputs.items():
            binding.bind_cpu_input(name, array)
        session.run_with_iobinding(binding, options)

    run_bound()
    for name in names:
        np.testing.assert_allclose(bound[name], outputs[name], rtol=1e-6)
    run = {"session.run": lambda: session.run(names, inputs, options), "io binding": run_bound}
    result = {"encode": alternate(encode, lambda: backend.run(inputs), requests, gap_s),
              "decode": alternate(decode, lambda: backend.run(inputs), requests, gap_s),
              "run": alternate(run, lambda: None, requests, gap_s)}
    backend.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="calls per model and step, shared among its ways")
    parser.add_argument("--gap-ms", type=float, default=1.5, help="idle time before each call")
    args = parser.parse_args()
    print(f"{args.requests} calls per model and step, {args.gap_ms} ms idle before each; "
          f"load average {os.getloadavg()[0]:.1f}\n")
    print("| model | step | way | p50 us | p99 us | p99.9 us | p50 / first way |")
    print("|---|---|---|---:|---:|---:|---:|")
    for label, model in (("mlp", mlp.build()), ("digits", digits.train().model)):
        for step, times in compare(model, args.requests, args.gap_ms / 1e3).items():
            base = None
            for way, t in times.items():
                p50, p99, p999 = np.percentile(t, [50, 99, 99.9])
                base = base or p50
                print(f"| {label} | {step} | {way} | {p50:.1f} | {p99:.1f} | {p999:.1f} | {p50 / base:.2f} |")


if __name__ == "__main__":
    main()
