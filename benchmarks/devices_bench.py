"""One model pinned over K simulated FPGAs (issue 18, first form: whole matrices), batch 1.

    .venv/bin/python benchmarks/devices_bench.py [--devices 1,2,4,8] > table.md

Models, msfp16 weights given directly (as benchmarks/mvu_bench.py's RNNs): GRU h2816 x
25 steps (DeepBench's largest, ``linear_before_reset``; W and R each 2816 x 8448) and
an MLP 3072-3072-...-10 of six 3072 x 3072 layers, both on the Brainwave-scale MVU
(``mvu=brainwave``: 96,000 MACs, 30 MB of M20K a device), ``--option devices=K`` for
each K. First row per model: one device with memory enough for every matrix
(``weight_mem``), the same arithmetic, the reference for speedup and scaling
efficiency (speedup / K). Figures come from the cycle model (``backends/fpga/cycles.py``):
cycles, modeled latency at 250 MHz, MAC utilisation over all K devices' MACs while
some device computes, the cycles some transfer between devices is in flight, each
device's computing cycles; and the host's wall time for one request on the golden
engine (in one process) on the big device and on the fewest devices that hold the
model, whose outputs are checked equal to the big device's (the runtime is the same
for every K: only the cycle model places the instructions).
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

from fpga_bench import SEQ, rnn  # noqa: E402
from mvu_bench import device  # noqa: E402

BIG = "2GiB"  # one device's weight memory large enough for every matrix of these models


def models():
    from models.examples import mlp

    model, formats = rnn("GRU", 2816)
    yield f"GRU h2816 x {SEQ} steps", model, formats, {"x": np.random.default_rng(1).standard_normal(
        (SEQ, 1, 2816)).astype(np.float32)}
    sizes = (3072,) * 7 + (10,)
    model = mlp.build(sizes)
    formats = {init.name: "msfp16" for init in model.graph.initializer if init.name.endswith("weight")}
    yield "MLP 3072-[3072 x6]-10", model, formats, {"input": np.random.default_rng(1).standard_normal(
        (1, 3072)).astype(np.float32)}


def checked(backend, reference: dict, feeds: dict) -> tuple[str, str]:
    """One request on the golden engine: outputs equal to the big device's, host wall ms."""
    t = time.perf_counter()
    out = backend.run(feeds)
    wall = time.perf_counter() - t
    return str(all(np.array_equal(out[k], v) for k, v in reference.items())), f"{1e3 * wall:.0f}"


def row(name: str, label: str, backend, big, check: tuple[str, str]) -> str:
    cost, cfg = backend.cost, backend.cfg
    k = cost.devices
    speedup = big.cost.cycles / cost.cycles
    on_each = backend.assignment.describe() if k > 1 else "all"
    return (f"| {name} | {label} | {on_each} | {cost.cycles} | {1e6 * cost.seconds(cfg):.1f} | "
            f"{100 * cost.utilisation(cfg):.1f}% | {speedup:.2f}x | {100 * speedup / k:.0f}% | {cost.link_cycles} | "
            f"{' / '.join(str(c) for c in cost.device_cycles)} | {check[0]} | {check[1]} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="1,2,4,8", help="device counts K")
    args = ap.parse_args()
    print("| model | devices | matrices on each device | cycles | modeled latency (us) | MAC utilisation "
          "(all devices) | speedup vs one big device | scaling efficiency | link cycles | each device's "
          "computing cycles | outputs equal the big device's | host wall (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, model, formats, feeds in models():
        big = device(model, formats, {"engine": "mvu", "mvu": "brainwave", "weight_mem": BIG})
        t = time.perf_counter()
        reference = big.run(feeds)
        print(row(name, f"1, {BIG}", big, big, ("", f"{1e3 * (time.perf_counter() - t):.0f}")), flush=True)
        check = None
        for k in args.devices.split(","):
            backend = device(model, formats, {"mvu": "brainwave", "devices": k})
            if isinstance(backend, str):
                print(f"| {name} | {k} | refused: {backend} | | | | | | | | | |", flush=True)
                continue
            # The runtime is the same for every K (only the cycle model places it): run the first.
            check, shown = check or checked(backend, reference, feeds), check is None
            print(row(name, k, backend, big, check if shown else ("as above", "")), flush=True)


if __name__ == "__main__":
    main()
