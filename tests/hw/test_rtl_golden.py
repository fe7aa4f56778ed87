"""The RTL through the C ABI against the golden model: bit-exact, with random stalls,
and cycle counts equal to the cycle model, over array sizes and mantissa widths."""
from dataclasses import replace

import numpy as np
import pytest

from hw import cycles, golden
from hw.config import HwConfig
from hw.random_tiles import KINDS, random_tile, random_tiles

# Every mantissa width on the cheap 4x4 array (two exponent blocks), then the
# larger arrays at a narrow and a wide width. acc_bits is kept small on some so
# that saturation is common.
_BASE4 = HwConfig(rows=4, cols=4, block=2, exp_bits=8)
SWEEP = [
    *(replace(_BASE4, mant_bits=m, acc_bits=min(63, 2 * m + 1 + 8)) for m in (2, 3, 4, 7, 8, 16)),
    HwConfig(rows=8, cols=8, block=4, mant_bits=2, exp_bits=4, acc_bits=12),
    HwConfig(rows=8, cols=8, block=4, mant_bits=8, exp_bits=6, acc_bits=40),
    HwConfig(rows=16, cols=16, block=16, mant_bits=8, acc_bits=48),  # the default preset
    HwConfig(rows=16, cols=16, block=8, mant_bits=16, acc_bits=63),  # near-fp32 reference mode
    HwConfig(rows=32, cols=32, block=16, mant_bits=4, exp_bits=5, acc_bits=24),
]
TILES = {4: 2000, 8: 1000, 16: 600, 32: 300}


def describe(cfg, t, got, want, i) -> str:
    v, c = np.argwhere(got != want)[0]
    return (f"{cfg.name()} tile {i} ({t.kind}): vector {v} column {c}: rtl {got[v, c]} golden {want[v, c]}; "
            f"acc_exp {t.acc_exp}, x_exp {t.x_exp[v].tolist()}, w_exp {t.w_exp[:, c].tolist()}")


@pytest.mark.parametrize("cfg", SWEEP, ids=HwConfig.name)
def test_rtl_matches_golden(cfg, tile_sims):
    sim = tile_sims(cfg)
    rng = np.random.default_rng(cfg.rows * 100 + cfg.mant_bits)
    for i, t in enumerate(random_tiles(cfg, rng, TILES[cfg.rows], max_vectors=6)):
        assert sim.load_weights(t.w_mant, t.w_exp) == cycles.load_cycles(cfg)
        stall = (0, 20, 50)[i % 3]
        got, n_cycles = sim.run_tile(t.x_mant, t.x_exp, t.acc_exp, stall_pct=stall, seed=i + 1)
        want = t.golden(cfg).acc
        assert np.array_equal(got, want), describe(cfg, t, got, want, i)
        expected = cycles.tile_cycles(cfg, len(t.x_mant))
        if stall == 0:
            assert n_cycles == expected, f"tile {i}: {n_cycles} cycles, model says {expected}"
        else:
            assert n_cycles >= expected


@pytest.mark.parametrize("cfg", [SWEEP[3], SWEEP[8]], ids=HwConfig.name)
def test_cycle_model_every_tile_length(cfg, tile_sims):
    sim = tile_sims(cfg)
    rng = np.random.default_rng(5)
    t = random_tile(cfg, rng, 40)
    sim.load_weights(t.w_mant, t.w_exp)
    for n in (1, 2, 3, 5, 8, 13, 21, 40):
        got, n_cycles = sim.run_tile(t.x_mant[:n], t.x_exp[:n], t.acc_exp)
        assert n_cycles == cycles.tile_cycles(cfg, n)
        assert np.array_equal(got, t.golden(cfg).acc[:n])


@pytest.mark.parametrize("kind", KINDS)
def test_extremes_on_default_array(kind, tile_sims):
    """Many tiles of each corner kind on the default 16x16 array, back to back on the same weights."""
    cfg = SWEEP[8]
    sim = tile_sims(cfg)
    rng = np.random.default_rng(len(kind))
    t0 = random_tile(cfg, rng, 4, kind)
    sim.load_weights(t0.w_mant, t0.w_exp)
    for i in range(200):
        t = random_tile(cfg, rng, 4, kind)
        t = replace(t, w_mant=t0.w_mant, w_exp=t0.w_exp)  # weights stay pinned
        got, _ = sim.run_tile(t.x_mant, t.x_exp, t.acc_exp, stall_pct=10 * (i % 4), seed=i + 7)
        want = t.golden(cfg).acc
        assert np.array_equal(got, want), describe(cfg, t, got, want, i)


def test_all_extreme_operands(tile_sims):
    """Most negative mantissas everywhere at the largest and smallest exponents."""
    cfg = SWEEP[9]  # m16, 63-bit accumulator
    sim = tile_sims(cfg)
    w = np.full((cfg.rows, cfg.cols), cfg.mant_min)
    x = np.full((3, cfg.rows), cfg.mant_min)
    for we, xe, acc_exp in [(cfg.exp_max, cfg.exp_max, cfg.acc_exp_max), (cfg.exp_max, cfg.exp_max, cfg.acc_exp_min),
                            (cfg.exp_min, cfg.exp_min, cfg.acc_exp_min), (cfg.exp_min, cfg.exp_min, cfg.acc_exp_max),
                            (cfg.exp_max, cfg.exp_min, 0)]:
        w_exp = np.full((cfg.n_blocks, cfg.cols), we)
        x_exp = np.full((3, cfg.n_blocks), xe)
        sim.load_weights(w, w_exp)
        got, _ = sim.run_tile(x, x_exp, acc_exp)
        want = golden.tile_matmul(cfg, w, w_exp, x, x_exp, acc_exp)
        assert np.array_equal(got, want.acc), (we, xe, acc_exp)
        if we == xe == cfg.exp_max and acc_exp == cfg.acc_exp_min:
            assert want.saturated.all() and (got == cfg.acc_max).all()


def test_debug_ports_and_busy_error(tile_sims):
    from hw.sim import SimError

    cfg = SWEEP[0]
    sim = tile_sims(cfg)
    sim.reset()
    assert sim.peek("w_ready") == 1 and sim.peek("busy") == 0
    sim.poke("start", 1)
    sim.tick()
    sim.poke("start", 0)
    sim.eval()
    assert sim.peek("busy") == 1 and sim.peek("w_ready") == 0 and sim.peek("x_ready") == 1
    with pytest.raises(SimError, match="busy"):
        sim.run_tile(np.zeros((1, cfg.rows), int), np.zeros((1, cfg.n_blocks), int), 0)
    with pytest.raises(KeyError):
        sim.peek("nonexistent")
    sim.reset()
    assert sim.peek("busy") == 0
