"""The MVU's golden model, layout and cycle model against independent references.

References: the exact product of the dequantised operands (float64 is exact for these
sizes), the systolic array's own golden model for the shared arithmetic, and the
closed-form cycle counts the issue states.
"""
from __future__ import annotations

import numpy as np
import pytest

from hw import golden as sys_golden
from hw.config import MVU_PRESETS, HwConfig, MvuConfig, mvu_preset
from hw.mvu import cycles, golden, layout

TINY = mvu_preset("tiny")


@pytest.fixture
def rng():
    return np.random.default_rng(17)


CFGS = [TINY, MvuConfig(tiles=4, dpes=3, lanes=8, block=4, mant_bits=4, exp_bits=5, acc_bits=24),
        MvuConfig(tiles=2, dpes=2, lanes=16, block=16, mant_bits=16, acc_bits=63)]


def _operands(cfg, rng, m, k, t, spread=3):
    kp = -(-k // cfg.lanes) * cfg.lanes
    wm = rng.integers(cfg.mant_min, cfg.mant_max + 1, (m, kp))
    xm = rng.integers(cfg.mant_min, cfg.mant_max + 1, (t, kp))
    wm[:, k:], xm[:, k:] = 0, 0
    we = rng.integers(-spread, spread + 1, (m, kp // cfg.block))
    xe = rng.integers(-spread, spread + 1, (t, kp // cfg.block))
    return wm, we, xm, xe


def _exact(cfg, wm, we, xm, xe):
    w = wm * np.repeat(np.ldexp(1.0, we), cfg.block, axis=1)
    x = xm * np.repeat(np.ldexp(1.0, xe), cfg.block, axis=1)
    return x @ w.T


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name())
def test_products_at_the_rule_exponent_are_within_the_rounding_bound_and_never_saturate(cfg, rng):
    for _ in range(20):
        m, k, t = rng.integers(1, 20), rng.integers(1, 70), rng.integers(1, 4)
        wm, we, xm, xe = _operands(cfg, rng, m, k, t)
        r = golden.mvm(cfg, wm, we, xm, xe)
        assert not r.saturated.any()
        n_blocks = wm.shape[1] // cfg.block
        bound = n_blocks * np.ldexp(0.5, r.acc_exp)[:, None]  # each block rounds by at most half an LSB
        assert (np.abs(r.values() - _exact(cfg, wm, we, xm, xe)) <= bound).all()


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name())
def test_one_product_equals_the_systolic_arithmetic_over_one_tile_of_all_of_k(cfg, rng):
    """An (M, K) product is the array's tile arithmetic with rows = K, cols = M."""
    m, k = 5, 3 * cfg.lanes
    wm, we, xm, xe = _operands(cfg, rng, m, k, 1)
    acc_exp = int(golden.choose_acc_exp(cfg, wm, we, xm, xe)[0]) - 2  # finer than safe: some saturate
    tile = HwConfig(rows=k, cols=m, mant_bits=cfg.mant_bits, exp_bits=cfg.exp_bits, block=cfg.block,
                    acc_bits=cfg.acc_bits) if k <= 64 else None
    if tile is None:
        pytest.skip("K past the array's limit")
    ref = sys_golden.tile_matmul(tile, wm.T, we.T, xm, xe, acc_exp)
    r = golden.mvm(cfg, wm, we, xm, xe, acc_exp=acc_exp)
    assert np.array_equal(r.acc, ref.acc) and np.array_equal(r.saturated, ref.saturated)


def test_splits_agree_where_nothing_saturates_and_follow_group_order_where_it_does(rng):
    cfg = TINY  # 2 tile engines: split 1 or 2
    wm, we, xm, xe = _operands(cfg, rng, 6, 40, 3)
    a, b = (golden.mvm(cfg, wm, we, xm, xe, split=s) for s in (1, 2))
    assert np.array_equal(a.acc, b.acc)
    # Saturating: acc_bits 32, exponent far too fine. Group order is defined; check it by hand.
    acc_exp = np.full(3, cfg.acc_exp_min)
    s2 = golden.mvm(cfg, wm, we, xm, xe, acc_exp=acc_exp, split=2)
    sums = golden.block_sums(cfg, golden.weight_operand(cfg, wm), xm)
    e = we.T[None] + xe[:, :, None]
    aligned, _, _ = sys_golden.align(cfg, sums, e - acc_exp[:, None, None])
    half = aligned.shape[1] // 2
    parts = []
    for lo, hi in ((0, half), (half, aligned.shape[1])):
        acc = np.zeros(aligned.shape[::2], np.int64)
        for blk in range(lo, hi):
            acc, _ = sys_golden.sat_add(cfg, acc, aligned[:, blk])
        parts.append(acc)
    want, _ = sys_golden.sat_add(cfg, parts[0], parts[1])
    assert s2.saturated.any() and np.array_equal(s2.acc, want)


def test_bad_operands_are_named():
    cfg = TINY
    with pytest.raises(ValueError, match="multiple of lanes"):
        golden.mvm(cfg, np.zeros((2, 6), int), np.zeros((2, 1), int), np.zeros((1, 6), int), np.zeros((1, 1), int))
    with pytest.raises(ValueError, match="x_exp has shape"):
        golden.mvm(cfg, np.zeros((2, 8), int), np.zeros((2, 2), int), np.zeros((1, 8), int), np.zeros((1, 3), int))
    with pytest.raises(ValueError, match="w_mant value 200"):
        golden.mvm(cfg, np.full((2, 8), 200), np.zeros((2, 2), int), np.zeros((1, 8), int), np.zeros((1, 2), int))
    with pytest.raises(ValueError, match="does not divide"):
        layout.shape(cfg, 4, 8, 3)


@pytest.mark.parametrize("split", [1, 2, 4])
def test_pack_puts_every_weight_where_the_layout_says(split, rng):
    cfg = MvuConfig(tiles=4, dpes=3, lanes=8, block=4)
    m, k = 17, 45
    s = layout.shape(cfg, m, k, split)
    kp = -(-k // cfg.lanes) * cfg.lanes
    wm = rng.integers(-100, 100, (m, kp))
    we = rng.integers(-5, 5, (m, kp // cfg.block))
    mant, exp = layout.pack(cfg, wm, we, s)
    per, rows = cfg.tiles // split, cfg.tiles // split * cfg.dpes
    for row in range(m):
        p, rg, d = row // rows, row % rows // cfg.dpes, row % cfg.dpes
        for word in range(kp // cfg.lanes):
            kg, j = word // s.c, word % s.c
            te, addr = kg * per + rg, p * s.c + j
            assert np.array_equal(mant[te, addr, d], wm[row, word * cfg.lanes:(word + 1) * cfg.lanes])
            assert np.array_equal(exp[te, addr, d], we[row, word * cfg.n_blocks:(word + 1) * cfg.n_blocks])
    assert mant.shape == (cfg.tiles, s.words, cfg.dpes, cfg.lanes)
    assert np.abs(mant).sum() == np.abs(wm).sum()  # padding is zeros


def test_cycles_follow_the_issue_formula_plus_the_pipeline():
    cfg = MVU_PRESETS["brainwave"]
    s = layout.shape(cfg, 4096, 1024, 1)  # ceil(4096 / 2400) passes of ceil(1024 / 40) words
    assert (s.n_pass, s.c) == (2, 26)
    assert cycles.product_cycles(s) == 1 + 2 * 26 + cycles.PIPELINE
    best = cycles.best_shape(cfg, 1024, 1024)  # 1024 rows fill half a pass of 2400: K split in two
    assert best.split == 2 and (best.n_pass, best.c) == (1, 13)
    assert all(cycles.product_cycles(best) <= cycles.product_cycles(layout.shape(cfg, 1024, 1024, s))
               for s in cfg.splits())


def test_config_checks_and_derives():
    with pytest.raises(ValueError, match="must divide lanes"):
        MvuConfig(lanes=12, block=8)
    with pytest.raises(ValueError, match="holds no word"):
        MvuConfig(tile_mem_bytes=16)
    bw = MVU_PRESETS["brainwave"]
    assert bw.macs == 96_000 and bw.vector_lanes == 2400
    assert bw.mem_words * bw.dpes * bw.lanes * bw.weight_bits <= bw.tile_mem_bytes * 8
    with pytest.raises(ValueError, match="unknown mvu preset"):
        mvu_preset("tpu")
