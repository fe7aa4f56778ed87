"""One model pinned over K simulated FPGAs (issue 18): whole matrices and row splits, batch 1.

    .venv/bin/python benchmarks/devices_bench.py [--devices 1,2,4,8] > table.md

Models, msfp16 weights given directly (as benchmarks/mvu_bench.py's RNNs): GRU h2816 x
25 steps (DeepBench's largest, ``linear_before_reset``; W and R each 2816 x 8448) and
an MLP 3072-3072-...-10 of six 3072 x 3072 layers, both on the Brainwave-scale MVU
(``mvu=brainwave``: 96,000 MACs, 30 MB of M20K a device), ``--option devices=K`` for
each K and each form (``--option split=whole``: every matrix whole on one device, a
pipeline; ``split=rows``: large products' output rows split over the K devices; the
partitioner serves the faster, marked). First row per model: one device with memory
enough for every matrix (``weight_mem``), the same arithmetic, the reference for
speedup and scaling efficiency (speedup / K). Figures come from the cycle model (``backends/fpga/cycles.py``):
cycles, modeled latency at 250 MHz, MAC utilisation over all K devices' MACs while
some device computes, the cycles some transfer between devices is in flight, each
device's computing cycles; and the host's wall time for one request on the golden
engine (in one process) on the big device, on the first K that holds the matrices
whole (the same instructions for every K) and on every row split, whose outputs are
checked equal to the big device's.
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


def row(name: str, label: str, backend, big, check: tuple[str, str], chosen: bool = False) -> str:
    cost, cfg = backend.cost, backend.cfg
    k = cost.devices
    speedup = big.cost.cycles / cost.cycles
    a = backend.assignment
    form = "one device" if a is None or k == 1 else ("rows" if a.rows else "whole") + (" (served)" if chosen else "")
    on_each = a.describe() if a is not None and k > 1 else "all"
    return (f"| {name} | {label} | {form} | {on_each} | {cost.cycles} | {1e6 * cost.seconds(cfg):.1f} | "
            f"{100 * cost.utilisation(cfg):.1f}% | {speedup:.2f}x | {100 * speedup / k:.0f}% | {cost.link_cycles} | "
            f"{' / '.join(str(c) for c in cost.device_cycles)} | {check[0]} | {check[1]} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", default="1,2,4,8", help="device counts K")
    args = ap.parse_args()
    print("| model | devices | form | matrices on each device | cycles | modeled latency (us) | MAC utilisation "
          "(all devices) | speedup vs one big device | scaling efficiency | link cycles | each device's "
          "computing cycles | outputs equal the big device's | host wall (ms) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, model, formats, feeds in models():
        big = device(model, formats, {"engine": "mvu", "mvu": "brainwave", "weight_mem": BIG})
        t = time.perf_counter()
        reference = big.run(feeds)
        print(row(name, f"1, {BIG}", big, big, ("", f"{1e3 * (time.perf_counter() - t):.0f}")), flush=True)
        checked_forms: set[str] = set()
        for k in args.devices.split(","):
            fits = {}
            for form in ("whole", "rows") if k != "1" else ("whole",):
                backend = device(model, formats, {"mvu": "brainwave", "devices": k, "split": form})
                if isinstance(backend, str):
                    print(f"| {name} | {k} | {form if k != '1' else 'one device'} | refused: {backend} "
                          f"| | | | | | | | | |", flush=True)
                else:
                    fits[form] = backend
            served = min(fits, key=lambda f: fits[f].cost.cycles, default=None)
            for form, backend in fits.items():
                # Whole matrices run the same instructions for every K (only their places
                # differ): the first K that holds them is run; each row split is its own.
                check = ("as above", "") if form in checked_forms else checked(backend, reference, feeds)
                checked_forms |= {"whole"} & {form}
                print(row(name, k, backend, big, check, form == served and len(fits) > 1), flush=True)


if __name__ == "__main__":
    main()
