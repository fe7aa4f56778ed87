"""Admission control vs plain FIFO under open-loop overload (issue 3).

One server process serves the same null/sleep model twice: ``adm`` with
admission control, ``fifo`` without (plain FIFO, bounded only by a large
queue). The capacity is measured first, in the same run (closed loop, enough
requests in flight to keep the instance busy), then each model is driven by
Poisson arrivals at fractions and multiples of it. For each point it prints the
goodput (requests answered within the SLO, per second, measured at the client),
p50/p99 of the requests that were served, and the refusals by status code.

    .venv/bin/python benchmarks/admission.py [--sleep-ms 5] [--slo-ms 50] [--duration 5]

Bounded: every point stops sending after ``--duration`` seconds and waits only
for what it sent. The client shares the machine with the server, so the service
time is several ms, far above the client's own per-request cost.
"""
from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.convert.onnx_io import finalize  # noqa: E402
from serve.bench import run_load  # noqa: E402
from serve.client import build_request  # noqa: E402
from serve.deploy import prepare  # noqa: E402
from serve.repository import ModelRepository  # noqa: E402

MODES = (("admission", "adm"), ("FIFO", "fifo"))


def _tiny_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "echo", [x], [y])
    return finalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))


def _write_repo(root: Path, sleep_ms: float, slo_ms: float, max_queue: int) -> None:
    source = root / "echo.onnx"
    onnx.save(_tiny_model(), source)
    repo = ModelRepository(root / "repo")
    for admission, name in ((True, "adm"), (False, "fifo")):
        prepared = prepare([source], name=name, backend="null", slo_ms=slo_ms,
                           backend_options={"sleep_ms": str(sleep_ms)})
        repo.add(prepared.config.replace(admission_control=admission, max_queue_size=max_queue,
                                         warmup_runs=5), prepared.model_bytes)


def _start(repo: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "serve.cli", "start", "--repo", str(repo), "--port", "0", "--metrics-port", "-1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        match = re.search(r"serving on (\S+?:\d+)", line)
        if match:
            return proc, match.group(1)
    raise RuntimeError(f"server exited with {proc.wait()} before serving")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sleep-ms", type=float, default=5.0, help="service time of the null backend")
    parser.add_argument("--slo-ms", type=float, default=50.0, help="the model's SLO (no client deadline is set)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of arrivals per point")
    parser.add_argument("--loads", default="0.5,0.9,1.5,3", help="offered load as multiples of capacity")
    parser.add_argument("--max-queue", type=int, default=4096, help="max_queue_size of both models")
    args = parser.parse_args(argv)
    loads = [float(x) for x in args.loads.split(",")]
    slo_s = args.slo_ms / 1e3

    with tempfile.TemporaryDirectory() as tmp:
        _write_repo(Path(tmp), args.sleep_ms, args.slo_ms, args.max_queue)
        proc, address = _start(Path(tmp) / "repo")
        try:
            x = np.random.default_rng(0).random((1, 16), dtype=np.float32)
            requests = {name: build_request(name, {"x": x}) for _, name in MODES}
            # Capacity: closed loop, 4 in flight keep the one instance busy; FIFO refuses nothing.
            cap = run_load(address, requests["fifo"], concurrency=4, requests=100_000, duration=4.0).throughput
            print(f"# {datetime.date.today()}  null backend sleep {args.sleep_ms:g} ms, 1 instance, "
                  f"SLO {args.slo_ms:g} ms, {args.duration:g} s of arrivals per point")
            print(f"# measured capacity {cap:.1f} requests/s (closed loop, concurrency 4)\n")
            print("| mode | load | offered/s | served | goodput/s | goodput/capacity | p50 ms | p99 ms | refused |")
            print("|---|---|---|---|---|---|---|---|---|")
            for label, name in MODES:
                for load in loads:
                    rate = load * cap
                    result = run_load(address, requests[name], rate=rate, duration=args.duration,
                                      requests=int(rate * args.duration * 2) + 10, warmup=5)
                    lat = result.latencies_s
                    good = int((lat <= slo_s).sum())
                    goodput = good / result.wall_s
                    refused = ", ".join(f"{k} {v}" for k, v in result.errors.most_common()) or "0"
                    p50, p99 = (np.percentile(lat, [50, 99]) * 1e3) if len(lat) else (np.nan, np.nan)
                    print(f"| {label} | {load:g}x | {rate:.0f} | {len(lat)} | {goodput:.1f} | "
                          f"{goodput / cap:.0%} | {p50:.1f} | {p99:.1f} | {refused} |", flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
