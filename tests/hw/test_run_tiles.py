"""``TileSim.run_tiles`` (``bw_run_tiles``: many tiles in one call) against the per-tile
path and the golden model: bit-exact, tile by tile, with the cycle model's counts."""
from dataclasses import replace

import numpy as np
import pytest

from hw import cycles
from hw.config import HwConfig
from hw.random_tiles import KINDS, random_tile
from hw.sim import SimError
from tests.hw.test_rtl_golden import SWEEP, describe

CONFIGS = [SWEEP[0], SWEEP[5], SWEEP[7], SWEEP[8], SWEEP[10]]  # 4x4 m2 and m16, 8x8, default, 32x32


def _tiles(cfg, rng, n, t):
    return [random_tile(cfg, rng, t, KINDS[i % len(KINDS)]) for i in range(n)]


def _stack(tiles, field):
    return np.stack([getattr(t, field) for t in tiles])


@pytest.mark.parametrize("cfg", CONFIGS, ids=HwConfig.name)
@pytest.mark.parametrize("stall", [0, 30])
def test_weights_per_tile_equal_per_tile_calls_and_golden(cfg, stall, tile_sims):
    sim = tile_sims(cfg)
    rng = np.random.default_rng(cfg.rows + cfg.mant_bits + stall)
    tiles = _tiles(cfg, rng, 12, 5)
    runs = sim.run_tiles(_stack(tiles, "x_mant"), _stack(tiles, "x_exp"), [t.acc_exp for t in tiles],
                         w_mant=_stack(tiles, "w_mant"), w_exp=_stack(tiles, "w_exp"), stall_pct=stall, seed=9)
    assert runs.acc.shape == (12, 5, cfg.cols) and runs.acc.dtype == np.int64
    assert (runs.load_cycles == cycles.load_cycles(cfg)).all()
    for i, t in enumerate(tiles):
        want = t.golden(cfg).acc
        assert np.array_equal(runs.acc[i], want), describe(cfg, t, runs.acc[i], want, i)
        sim.load_weights(t.w_mant, t.w_exp)
        acc, n_cycles = sim.run_tile(t.x_mant, t.x_exp, t.acc_exp, stall_pct=stall, seed=9 + i)
        assert np.array_equal(acc, runs.acc[i]) and n_cycles == runs.tile_cycles[i], f"tile {i}"
        if stall == 0:
            assert n_cycles == cycles.tile_cycles(cfg, 5)


def test_shared_inputs_by_index_as_the_fpga_backend_runs_them(tile_sims):
    """Three input tiles, each run against two weight tiles (x_index), one vector to many."""
    cfg = SWEEP[8]
    sim = tile_sims(cfg)
    rng = np.random.default_rng(3)
    for t_len in (1, 16, 40):
        inputs = _tiles(cfg, rng, 3, t_len)
        weights = _tiles(cfg, rng, 6, 1)
        x_index = np.array([0, 0, 1, 1, 2, 2])
        # acc_exp None: each tile at the accumulator exponent the golden model chooses
        want = [replace(inputs[j], w_mant=w.w_mant, w_exp=w.w_exp, acc_exp=None).golden(cfg)
                for j, w in zip(x_index, weights)]
        runs = sim.run_tiles(_stack(inputs, "x_mant"), _stack(inputs, "x_exp"), [r.acc_exp for r in want],
                             x_index=x_index, w_mant=_stack(weights, "w_mant"), w_exp=_stack(weights, "w_exp"))
        for i, r in enumerate(want):
            assert np.array_equal(runs.acc[i], r.acc), f"T={t_len} tile {i}"
        assert (runs.tile_cycles == cycles.tile_cycles(cfg, t_len)).all()
        assert (runs.load_cycles == cycles.load_cycles(cfg)).all()


def test_on_the_loaded_weights_into_a_callers_buffer(tile_sims):
    cfg = SWEEP[7]
    sim = tile_sims(cfg)
    rng = np.random.default_rng(4)
    w = random_tile(cfg, rng, 1)
    tiles = [replace(t, w_mant=w.w_mant, w_exp=w.w_exp) for t in _tiles(cfg, rng, 20, 7)]
    sim.load_weights(w.w_mant, w.w_exp)
    out = np.full((20, 7, cfg.cols), -1, np.int64)
    c0 = sim.cycles
    runs = sim.run_tiles(_stack(tiles, "x_mant"), _stack(tiles, "x_exp"), [t.acc_exp for t in tiles], out=out)
    assert runs.acc is out and runs.load_cycles is None
    assert sim.cycles - c0 == runs.tile_cycles.sum() == 20 * cycles.tile_cycles(cfg, 7)
    for i, t in enumerate(tiles):
        assert np.array_equal(out[i], t.golden(cfg).acc), f"tile {i}"
    one = sim.run_tiles(tiles[0].x_mant[None], tiles[0].x_exp[None], tiles[0].acc_exp)  # one int for all
    assert np.array_equal(one.acc[0], out[0])
    empty = sim.run_tiles(np.zeros((0, 7, cfg.rows)), np.zeros((0, 7, cfg.n_blocks)), [])
    assert empty.acc.shape == (0, 7, cfg.cols) and empty.tile_cycles.shape == (0,)


def test_bad_shapes_and_sizes_are_named(tile_sims):
    cfg = SWEEP[0]  # 4x4, two exponent blocks
    sim = tile_sims(cfg)
    xm, xe = np.zeros((3, 2, cfg.rows), int), np.zeros((3, 2, cfg.n_blocks), int)
    wm, we = np.zeros((3, cfg.rows, cfg.cols), int), np.zeros((3, cfg.n_blocks, cfg.cols), int)
    bad = [
        (dict(x_mant=xm[:, :, :3]), r"x_mant has shape \(3, 2, 3\), expected \(M, T, 4\)"),
        (dict(x_mant=xm[0]), r"x_mant has shape \(2, 4\), expected \(M, T, 4\)"),
        (dict(x_exp=xe[:, :1]), r"x_exp has shape \(3, 1, 2\), expected \(3, 2, 2\)"),
        (dict(acc_exp=[0, 0]), r"acc_exp has shape \(2,\), expected \(3,\)"),
        (dict(w_mant=wm[:2]), r"w_mant has shape \(2, 4, 4\), expected \(3, 4, 4\)"),
        (dict(w_exp=we[:, :1]), r"w_exp has shape \(3, 1, 4\), expected \(3, 2, 4\)"),
        (dict(w_exp=None), "both w_mant and w_exp, or neither"),
        (dict(x_index=[0, 3, 1]), r"x_index must be in 0..2 \(x_mant holds 3 input tiles\)"),
        (dict(x_index=[[0]]), r"x_index has shape \(1, 1\), expected \(N,\)"),
        (dict(x_mant=xm[:, :0], x_exp=xe[:, :0]), "at least one vector"),
        (dict(out=np.zeros((3, 2, cfg.cols))), r"out must be a C-contiguous \(3, 2, 4\) int64 array, got float64"),
        (dict(out=np.zeros((3, 4, 2), np.int64).transpose(0, 2, 1)), "out must be a C-contiguous"),
        (dict(stall_pct=100), "stall_pct must be in 0..99"),
    ]
    for change, message in bad:
        args = dict(x_mant=xm, x_exp=xe, acc_exp=[0, 0, 0], w_mant=wm, w_exp=we) | change
        with pytest.raises(ValueError, match=message):
            sim.run_tiles(**args)


def test_a_hardware_error_names_the_tile(tile_sims):
    cfg = SWEEP[0]
    sim = tile_sims(cfg)
    sim.reset()
    sim.poke("start", 1)  # a tile left running: the array is busy
    sim.tick()
    sim.poke("start", 0)
    with pytest.raises(SimError, match="tile 0 of 2: busy"):
        sim.run_tiles(np.zeros((2, 1, cfg.rows), int), np.zeros((2, 1, cfg.n_blocks), int), 0)
    with pytest.raises(SimError, match="tile 0 of 1: busy"):  # the weight load is refused too
        sim.run_tiles(np.zeros((1, 1, cfg.rows), int), np.zeros((1, 1, cfg.n_blocks), int), 0,
                      w_mant=np.zeros((1, cfg.rows, cfg.cols), int), w_exp=np.zeros((1, cfg.n_blocks, cfg.cols), int))
    sim.reset()
