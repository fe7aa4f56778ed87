"""Benchmark the simulated systolic array: cycles/s and us per tile, C ABI vs pyverilator,
and the build time cold (empty cache) and cached.

    .venv/bin/python benchmarks/hw_bench.py [--preset default] [--vectors 16] [--tiles 2000]

A tile is the array's weights (rows x cols) times `--vectors` input vectors: the
default preset's 16x16 array with 16 vectors is a 16x16x16 tile. Both wall time and
this thread's CPU time are printed: on a shared machine the CPU time is the steadier,
and each figure is the best of `--repeat` runs. A "C ABI bare" line calls
``bw_run_tile`` through ctypes without ``TileSim`` (no Python checks or copies); another
C-ABI line runs tiles of `--long-vectors` vectors, where the per-call cost (Python,
ctypes, start and drain) is spread over many cycles: the simulator's own rate. "C ABI
batch" runs `--batch` tiles per ``TileSim.run_tiles`` call on the loaded weights, "batch
+load" loads a weight tile before each (as the FPGA backend's rtl engine does; its
cycles count the loads). With `--rounds R` the per-tile, bare and batched paths run
alternately R times and a summary gives each one's median rate over the rounds and the
median of the per-round ratios to ``run_tile``. The load average is printed before and
after. Never a test: numbers depend on the machine (see benchmarks/README.md).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

from hw import build, cycles
from hw.config import PRESETS, preset
from hw.random_tiles import random_tile


def timed(fn, n, repeat=1):
    """Best (wall, cpu) seconds of ``repeat`` runs of ``n`` calls."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(n):
            fn()
        best = min(best[0], time.perf_counter() - w0), min(best[1], time.thread_time() - c0)
    return best


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def report(label, n_tiles, n_cycles, wall, cpu) -> float:
    """Print one line; return the CPU-time rate in cycles/s."""
    print(f"{label:12s} {n_tiles:6d} tiles {n_cycles:9d} cycles | wall {n_cycles / wall / 1e6:6.3f} M cycles/s "
          f"{wall / n_tiles * 1e6:9.1f} us/tile | cpu {n_cycles / cpu / 1e6:6.3f} M cycles/s "
          f"{cpu / n_tiles * 1e6:9.1f} us/tile")
    return n_cycles / cpu


def bench_build(cfg):
    with tempfile.TemporaryDirectory() as d:
        old = os.environ.get("BWSERVE_HW_CACHE")
        os.environ["BWSERVE_HW_CACHE"] = d
        try:
            t0 = time.perf_counter()
            build.build_model(cfg)
            cold = time.perf_counter() - t0
            t0 = time.perf_counter()
            build.build_model(cfg)
            cached = time.perf_counter() - t0
        finally:
            if old is None:
                del os.environ["BWSERVE_HW_CACHE"]
            else:
                os.environ["BWSERVE_HW_CACHE"] = old
    print(f"build {cfg.name()}: cold (empty cache, runtime included) {cold:.1f} s, cached {cached * 1e3:.1f} ms")


def bench_run_tile(cfg, sim, t, n_tiles, repeat) -> float:
    """``TileSim.run_tile``, one call per tile: what a Python caller pays per tile."""
    sim.load_weights(t.w_mant, t.w_exp)
    got, per_tile = sim.run_tile(t.x_mant, t.x_exp, t.acc_exp)
    assert np.array_equal(got, t.golden(cfg).acc) and per_tile == cycles.tile_cycles(cfg, len(t.x_mant))
    wall, cpu = timed(lambda: sim.run_tile(t.x_mant, t.x_exp, t.acc_exp), n_tiles, repeat)
    return report("C ABI", n_tiles, n_tiles * per_tile, wall, cpu)


def bench_bare(cfg, t, n_tiles, repeat) -> float:
    """``bw_run_tile`` called straight through ctypes on prepared int32 buffers: the C ABI
    without ``TileSim.run_tile``'s own Python (argument checks, copies in and out)."""
    from hw.sim import load_library

    lib = load_library(cfg)
    h = lib.bw_create()
    try:
        lib.bw_reset(h)
        lib.bw_load_weights(h, np.ascontiguousarray(t.w_mant, np.int32), np.ascontiguousarray(t.w_exp, np.int32))
        xm, xe = np.ascontiguousarray(t.x_mant, np.int32), np.ascontiguousarray(t.x_exp, np.int32)
        y = np.zeros((len(xm), cfg.cols), np.int64)
        args = (h, xm.ctypes.data, xe.ctypes.data, len(xm), int(t.acc_exp), y.ctypes.data, 0, 1)
        per_tile = lib.bw_run_tile(*args)
        assert per_tile == cycles.tile_cycles(cfg, len(xm)) and np.array_equal(y, t.golden(cfg).acc)
        wall, cpu = timed(lambda: lib.bw_run_tile(*args), n_tiles, repeat)
    finally:
        lib.bw_free(h)
    return report("C ABI bare", n_tiles, n_tiles * per_tile, wall, cpu)


def bench_batched(cfg, sim, t, n_tiles, batch, repeat, load) -> float:
    """``TileSim.run_tiles`` on ``batch`` copies of tile ``t`` per call, each loading the
    tile's weights first if ``load`` (the FPGA backend's pattern), else on the loaded ones."""
    stack = lambda a: np.ascontiguousarray(np.broadcast_to(a, (batch, *a.shape)), np.int32)  # noqa: E731
    xm, xe = stack(t.x_mant), stack(t.x_exp)
    w = dict(w_mant=stack(t.w_mant), w_exp=stack(t.w_exp)) if load else {}
    out = np.empty((batch, len(t.x_mant), cfg.cols), np.int64)
    sim.load_weights(t.w_mant, t.w_exp)
    runs = sim.run_tiles(xm, xe, t.acc_exp, out=out, **w)
    assert (runs.acc == t.golden(cfg).acc).all() and (runs.tile_cycles == cycles.tile_cycles(cfg, len(xm[0]))).all()
    per_call = int(runs.tile_cycles.sum() + (runs.load_cycles.sum() if load else 0))
    calls = max(1, n_tiles // batch)
    wall, cpu = timed(lambda: sim.run_tiles(xm, xe, t.acc_exp, out=out, **w), calls, repeat)
    return report("batch+load" if load else "C ABI batch", calls * batch, calls * per_call, wall, cpu)


def summary(rates: dict[str, list[float]]) -> None:
    """Median rate of each path over the rounds, and the median per-round ratio to run_tile."""
    base = rates["C ABI"]
    print(f"summary over {len(base)} rounds (CPU time, M cycles/s): path, p50 (min-max), p50 of ratio to run_tile")
    for label, r in rates.items():
        ratio = statistics.median(a / b for a, b in zip(r, base))
        print(f"  {label:12s} {statistics.median(r) / 1e6:6.3f} ({min(r) / 1e6:.3f}-{max(r) / 1e6:.3f})  x{ratio:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--vectors", type=int, default=16)
    p.add_argument("--tiles", type=int, default=2000)
    p.add_argument("--long-vectors", type=int, default=512)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--batch", type=int, default=100, help="tiles per run_tiles call")
    p.add_argument("--rounds", type=int, default=1, help="alternate the per-tile and batched paths this often")
    p.add_argument("--py-tiles", type=int, default=10)
    p.add_argument("--no-build", action="store_true", help="skip the cold build measurement")
    p.add_argument("--no-pyverilator", action="store_true")
    args = p.parse_args()
    cfg = preset(args.preset)
    t = random_tile(cfg, np.random.default_rng(0), args.vectors)
    per_tile = cycles.tile_cycles(cfg, args.vectors)
    print(load())
    print(f"{cfg.name()}: {cfg.rows}x{cfg.cols}x{args.vectors} tile = {per_tile} cycles "
          f"({cycles.tile_seconds(cfg, args.vectors) * 1e6:.2f} us at {cfg.clock_hz / 1e6:.0f} MHz modelled)")

    from hw.sim import TileSim

    sim = TileSim(cfg)
    rates: dict[str, list[float]] = {"C ABI": []}  # run_tile's first: the summary's base
    for i in range(args.rounds):
        paths = {"C ABI": lambda: bench_run_tile(cfg, sim, t, args.tiles, args.repeat),
                 "C ABI bare": lambda: bench_bare(cfg, t, args.tiles, args.repeat),
                 "C ABI batch": lambda: bench_batched(cfg, sim, t, args.tiles, args.batch, args.repeat, load=False),
                 "batch+load": lambda: bench_batched(cfg, sim, t, args.tiles, args.batch, args.repeat, load=True)}
        order = list(paths) if i % 2 == 0 else list(paths)[::-1]  # no path always first
        for label in order:
            rates.setdefault(label, []).append(paths[label]())
    if args.rounds > 1:
        summary(rates)
    long = random_tile(cfg, np.random.default_rng(1), args.long_vectors)
    sim.load_weights(long.w_mant, long.w_exp)
    assert np.array_equal(sim.run_tile(long.x_mant, long.x_exp, long.acc_exp)[0], long.golden(cfg).acc)
    n_long = max(1, args.tiles * args.vectors // args.long_vectors)
    wall, cpu = timed(lambda: sim.run_tile(long.x_mant, long.x_exp, long.acc_exp), n_long, args.repeat)
    report(f"C ABI x{args.long_vectors}", n_long, n_long * cycles.tile_cycles(cfg, args.long_vectors), wall, cpu)
    g_wall, g_cpu = timed(lambda: t.golden(cfg), args.tiles)
    print(f"{'golden':12s} {args.tiles:6d} tiles (numpy)          | wall {g_wall / args.tiles * 1e6:9.1f} us/tile"
          f" | cpu {g_cpu / args.tiles * 1e6:9.1f} us/tile")

    if not args.no_pyverilator:
        from hw.pysim import PyTile

        t0 = time.perf_counter()
        py = PyTile(cfg)
        print(f"pyverilator model ready in {time.perf_counter() - t0:.1f} s")
        py.load_weights(t.w_mant, t.w_exp)
        assert np.array_equal(py.run_tile(t.x_mant, t.x_exp, t.acc_exp)[0], t.golden(cfg).acc)
        wall, cpu = timed(lambda: py.run_tile(t.x_mant, t.x_exp, t.acc_exp), args.py_tiles)
        report("pyverilator", args.py_tiles, args.py_tiles * per_tile, wall, cpu)

    if not args.no_build:
        bench_build(cfg)
    print(load())


if __name__ == "__main__":
    main()
