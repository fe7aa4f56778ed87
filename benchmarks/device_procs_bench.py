"""Devices as processes against devices in the server's process (issue 18, items 3 and 5).

    .venv/bin/python benchmarks/device_procs_bench.py [--models small,gru,mlp] [--blocks 10] [--seconds 30]

The same model, pinned over the same devices, served two ways in one run: the
in-process runtime (``devices=K``) and one ``backends.fpga.device`` process a device
on loopback TCP (``device_procs=1``), both on the golden engine. Requests alternate
between the two in ``--blocks`` blocks (of as many requests as fill about ``--seconds``
a model in all), so drift on the shared machine falls on both alike; outputs are checked equal bit for bit. Per request, the
host's wall time of ``backend.run``: p50 / p99 / p99.9 in ms, and the processes' p50
over the in-process p50 (the ratio in the same run is the figure; absolute times
drift). ``frames``: the messages one request takes (inputs, RUNs, registers between
devices, outputs, DONEs).

Models: ``small``, an MLP 64-48-40-32-10 on the tiny MVU over 3 devices (the cost of
the exchange itself: the arithmetic takes well under a millisecond); ``gru``, a GRU
h256 x 25 steps (msfp16) on the small MVU over 2 devices, twice: W on one device and
R on the other (``split=whole``: the state crosses the link both ways at every step),
and every product's rows halved over the two (``split=rows``: each step gathers h and
exchanges accumulator statistics); ``mlp``, six 3072 x 3072 layers over
3 Brainwave-scale devices (benchmarks/devices_bench.py's). Not devices_bench.py's GRU
h2816: the golden engine takes about 30 s a request on it, in either form.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from devices_bench import models as brainwave_models  # noqa: E402
from fpga_bench import SEQ, rnn  # noqa: E402
from mvu_bench import device  # noqa: E402


def models(names: list[str]):
    """(label, model, formats, feeds, options) of each model asked for."""
    from models.examples import mlp

    if "small" in names:
        model = mlp.build((64, 48, 40, 32, 10))
        feeds = {"input": np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)}
        # 6,912 bytes a device: its largest matrix (64 x 48), never two (as tests/fpga/test_devices.py).
        yield "MLP 64-48-40-32-10, tiny MVU", model, {}, feeds, {"mvu": "tiny", "devices": "3", "weight_mem": "6912"}
    if "gru" in names:
        model, formats = rnn("GRU", 256)
        feeds = {"x": np.random.default_rng(1).standard_normal((SEQ, 1, 256)).astype(np.float32)}
        # 208,896 bytes a device: one of W and R (768 words a tile engine each), never both.
        for split in ("whole", "rows"):
            yield f"GRU h256 x {SEQ} steps, small MVU, split={split}", model, formats, feeds, {
                "mvu": "small", "devices": "2", "split": split, "weight_mem": "208896"}
    if "mlp" in names:
        label, model, formats, feeds = list(brainwave_models())[1]
        yield label, model, formats, feeds, {"mvu": "brainwave", "devices": "auto"}


def frames(backend) -> int:
    """Messages one request takes over the device processes' links."""
    plans = backend.runtime.plans
    registers = sum(len(to) for p in plans for sends in p.send for _, to in sends)
    return sum(len(p.inputs) + len(p.outputs) for p in plans) + 2 * len(plans) + registers


def timed(backend, feeds: dict, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        backend.run(feeds)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="small,gru,mlp")
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=30, help="about how long each model's blocks take in all")
    args = ap.parse_args()
    print("| model | devices | way | requests | p50 ms | p99 ms | p99.9 ms | p50 / in-process p50 | frames a request "
          "| outputs equal |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, model, formats, feeds, options in models(args.models.split(",")):
        inproc = device(model, formats, options)
        if isinstance(inproc, str):
            print(f"| {label} | | refused: {inproc} | | | | | | | |", flush=True)
            continue
        procs = device(model, formats, {**options, "device_procs": "1"})
        try:
            t = time.perf_counter()
            want, got = inproc.run(feeds), procs.run(feeds)
            per_block = max(1, int(args.seconds / args.blocks / (time.perf_counter() - t)))
            equal = all(np.array_equal(want[k], got[k]) for k in want)
            times: dict[str, list[float]] = {"in process": [], "processes": []}
            for _ in range(args.blocks):
                times["in process"] += timed(inproc, feeds, per_block)
                times["processes"] += timed(procs, feeds, per_block)
            base = np.percentile(times["in process"], 50)
            for way, t in times.items():
                p50, p99, p999 = np.percentile(t, [50, 99, 99.9])
                print(f"| {label} | {inproc.cost.devices} | {way} | {len(t)} | {1e3 * p50:.2f} | {1e3 * p99:.2f} | "
                      f"{1e3 * p999:.2f} | {p50 / base:.2f} | {frames(procs) if way == 'processes' else ''} | "
                      f"{equal} |", flush=True)
        finally:
            procs.close()


if __name__ == "__main__":
    main()
