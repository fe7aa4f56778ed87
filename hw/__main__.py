"""``python -m hw build|test-tile``: build the Verilated model, run random tiles against the golden model."""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from hw import cycles
from hw.config import PRESETS, HwConfig, preset


def _config(args) -> HwConfig:
    from dataclasses import replace

    cfg = preset(args.preset)
    changes = {k: v for k in ("rows", "cols", "mant_bits", "exp_bits", "block", "acc_bits")
               if (v := getattr(args, k)) is not None}
    return replace(cfg, **changes)


def cmd_build(args) -> int:
    from hw import build

    cfg = _config(args)
    t0 = time.perf_counter()
    path = build.build_model(cfg)
    print(f"{cfg.name()}: {path} ({time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_test_tile(args) -> int:
    from hw.random_tiles import random_tiles
    from hw.sim import TileSim

    cfg = _config(args)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    sim = TileSim(cfg)
    print(f"{cfg.name()}: model ready in {time.perf_counter() - t0:.1f} s")
    sim_s, bad, n_cycles = 0.0, 0, 0
    for i, t in enumerate(random_tiles(cfg, rng, args.tiles, max_vectors=args.vectors)):
        t1 = time.perf_counter()
        sim.load_weights(t.w_mant, t.w_exp)
        got, c = sim.run_tile(t.x_mant, t.x_exp, t.acc_exp, stall_pct=args.stall, seed=i + 1)
        sim_s += time.perf_counter() - t1
        n_cycles += c
        want = t.golden(cfg).acc
        if not np.array_equal(got, want):
            bad += 1
            v, col = np.argwhere(got != want)[0]
            print(f"tile {i} ({t.kind}): MISMATCH at vector {v} column {col}: rtl {got[v, col]} golden {want[v, col]}")
        elif args.stall == 0 and c != cycles.tile_cycles(cfg, len(t.x_mant)):
            bad += 1
            print(f"tile {i}: {c} cycles, cycle model says {cycles.tile_cycles(cfg, len(t.x_mant))}")
    total = sim.cycles
    print(f"{args.tiles} tiles, {bad} bad; {n_cycles} tile cycles "
          f"({total} simulated incl. weight loads) in {sim_s * 1e3:.1f} ms: "
          f"{total / sim_s / 1e6:.2f} M cycles/s, {sim_s / args.tiles * 1e6:.1f} us/tile")
    return 1 if bad else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hw", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, fn in (("build", cmd_build), ("test-tile", cmd_test_tile)):
        s = sub.add_parser(name)
        s.set_defaults(fn=fn)
        s.add_argument("--preset", default="default", choices=sorted(PRESETS))
        for k in ("rows", "cols", "mant_bits", "exp_bits", "block", "acc_bits"):
            s.add_argument(f"--{k.replace('_', '-')}", dest=k, type=int)
        if name == "test-tile":
            s.add_argument("--tiles", type=int, default=100)
            s.add_argument("--vectors", type=int, default=16, help="at most this many vectors per tile")
            s.add_argument("--stall", type=int, default=0, help="random stall percentage (0..99)")
            s.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except Exception as e:  # the CLI's boundary: one line, not a traceback
        from hw.toolchain import ToolMissing

        if isinstance(e, (ToolMissing, ValueError)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
