"""The golden model against an independent pure-Python reference and float64.

The reference below is written from the documented arithmetic (hw/golden.py's
docstring) with Python integers and Fractions, sharing no code with the model.
"""
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest

from hw import bfp, golden
from hw.config import HwConfig
from hw.random_tiles import KINDS, random_tile


def ref_align(cfg: HwConfig, s: int, shift: int) -> int:
    if shift >= 0:
        v = s * 2**shift
        return min(max(v, cfg.acc_min), cfg.acc_max)
    return round(Fraction(s, 2**-shift))  # Python rounds Fractions half to even


def ref_tile(cfg: HwConfig, t) -> np.ndarray:
    out = np.zeros((t.x_mant.shape[0], cfg.cols), dtype=object)
    for v in range(t.x_mant.shape[0]):
        for c in range(cfg.cols):
            acc = 0
            for b in range(cfg.n_blocks):
                rows = range(b * cfg.block, (b + 1) * cfg.block)
                s = sum(int(t.x_mant[v, k]) * int(t.w_mant[k, c]) for k in rows)
                shift = int(t.w_exp[b, c]) + int(t.x_exp[v, b]) - t.acc_exp
                acc = min(max(acc + ref_align(cfg, s, shift), cfg.acc_min), cfg.acc_max)
            out[v, c] = acc
    return out


def first_mismatch(cfg, t, got, want) -> str:
    v, c = np.argwhere(got != want)[0]
    return (
        f"{cfg.name()} {t.kind} tile: vector {v} column {c}: got {got[v, c]} want {want[v, c]} "
        f"(acc_exp {t.acc_exp}, x_exp {t.x_exp[v].tolist()}, w_exp {t.w_exp[:, c].tolist()})"
    )


SMALL = HwConfig(rows=8, cols=4, block=4, mant_bits=4, exp_bits=4, acc_bits=16)


@pytest.mark.parametrize("cfg", [SMALL, replace(SMALL, mant_bits=2, acc_bits=7), replace(SMALL, block=8)], ids=HwConfig.name)
def test_align_exhaustive(cfg):
    """Every block sum against every shift the format can produce."""
    lim = 1 << (cfg.psum_bits - 1)
    s = np.arange(-lim, lim, dtype=np.int64)
    for shift in range(2 * cfg.exp_min - cfg.acc_exp_max, 2 * cfg.exp_max - cfg.acc_exp_min + 1):
        got, sat, inexact = golden.align(cfg, s, np.full_like(s, shift))
        want = np.array([ref_align(cfg, int(v), shift) for v in s])
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, f"shift {shift}: sum {s[bad[0]]} -> {got[bad[0]]}, want {want[bad[0]]}"
        exact = np.array([Fraction(int(v)) * Fraction(2) ** shift for v in s])
        assert np.array_equal(inexact, (shift < 0) & (want != exact))
        assert np.array_equal(sat, (shift >= 0) & (want != exact))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "cfg",
    [SMALL, replace(SMALL, mant_bits=2, acc_bits=7), replace(SMALL, mant_bits=16, exp_bits=8, acc_bits=63, block=8)],
    ids=HwConfig.name,
)
def test_tile_matches_reference(cfg, kind):
    rng = np.random.default_rng(1)
    for _ in range(20):
        t = random_tile(cfg, rng, int(rng.integers(1, 5)), kind)
        got = t.golden(cfg).acc
        want = ref_tile(cfg, t)
        assert np.array_equal(got, want.astype(np.int64)), first_mismatch(cfg, t, got, want)


@pytest.mark.parametrize("mant", [2, 3, 4, 7, 8, 16])
def test_error_within_documented_bound(mant):
    """|golden - float64(dequantised operands)| <= n_rounded * 2**(acc_exp-1), no saturation."""
    cfg = HwConfig(rows=16, cols=8, block=4, mant_bits=mant, exp_bits=5, acc_bits=min(63, 2 * mant + 10))
    rng = np.random.default_rng(mant)
    for i in range(50):
        t = random_tile(cfg, rng, 4, "rounding" if i % 2 else "typical")
        r = t.golden(cfg)
        # Exponents span a few units here, so float64 holds the exact sum.
        w = bfp.decode(cfg, t.w_mant.T, t.w_exp.T).T
        x = bfp.decode(cfg, t.x_mant, t.x_exp)
        exact = x @ w
        shifts = t.w_exp[:, None, :] + t.x_exp.T[:, :, None] - r.acc_exp
        n_rounded = (shifts < 0).sum(axis=0)
        ok = ~r.saturated
        err = np.abs(r.values() - exact)
        assert np.all(err[ok] <= n_rounded[ok] * 2.0 ** (r.acc_exp - 1))
        assert np.all(err[ok & ~r.inexact] == 0)
        if t.kind == "typical":  # choose_acc_exp's exponent: never saturates
            assert not r.saturated.any()


def test_chosen_acc_exp_is_exact_when_range_allows():
    cfg = HwConfig(rows=16, cols=16, mant_bits=8, exp_bits=6, acc_bits=48)
    rng = np.random.default_rng(7)
    w = rng.standard_normal((16, 16))
    x = rng.standard_normal((3, 16))
    wm, we = bfp.encode(cfg, w.T)
    xm, xe = bfp.encode(cfg, x)
    r = golden.tile_matmul(cfg, wm.T, we.T, xm, xe)
    exact = bfp.decode(cfg, xm, xe) @ bfp.decode(cfg, wm, we).T
    assert not r.inexact.any() and not r.saturated.any()
    assert np.array_equal(r.values(), exact)
    # and the quantisation itself is close: relative error of a few mantissa ulps
    assert np.max(np.abs(exact - x @ w)) < 0.1 * np.max(np.abs(x @ w))


def test_saturation_is_sequential_and_clips_each_step():
    cfg = HwConfig(rows=8, cols=1, block=4, mant_bits=4, exp_bits=4, acc_bits=16)
    w = np.full((8, 1), -8)
    x = np.vstack([np.r_[np.full(4, -8), np.full(4, 7)]])
    # block 0: +256 << 7 = 32768 -> saturates to 32767; block 1: -224 << 0 added after.
    r = golden.tile_matmul(cfg, w, [[7], [0]], x, [[0, 0]], acc_exp=0)
    assert r.acc[0, 0] == 32767 - 224
    assert r.saturated[0, 0]


def test_rounding_ties_to_even():
    cfg = HwConfig(rows=4, cols=3, block=4, mant_bits=4, exp_bits=4, acc_bits=16)
    w = np.array([[1, 1, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0]])
    x = np.array([[5, 0, 0, 0], [6, 0, 0, 0], [-5, 0, 0, 0], [7, 0, 0, 0]])
    r = golden.tile_matmul(cfg, w, [[0, 0, 0]], x, [[0]] * 4, acc_exp=1)
    assert r.acc[:, 0].tolist() == [2, 3, -2, 4]  # 2.5->2, 3->3, -2.5->-2, 3.5->4
    assert r.inexact[:, 0].tolist() == [True, False, True, True]


@pytest.mark.parametrize(
    "args",
    [
        dict(w_mant=np.full((4, 4), 8)),  # mantissa out of range
        dict(w_exp=np.full((1, 4), 8)),  # exponent out of range
        dict(x_mant=np.zeros((2, 3), int)),  # wrong shape
        dict(x_mant=np.zeros((2, 4))),  # float
        dict(acc_exp=99),
    ],
)
def test_bad_operands_are_rejected(args):
    cfg = HwConfig(rows=4, cols=4, block=4, mant_bits=4, exp_bits=4, acc_bits=16)
    ops = dict(w_mant=np.zeros((4, 4), int), w_exp=np.zeros((1, 4), int), x_mant=np.zeros((2, 4), int), x_exp=np.zeros((2, 1), int))
    ops.update(args)
    with pytest.raises((ValueError, TypeError)):
        golden.tile_matmul(cfg, **ops)


def test_encode_decode():
    cfg = HwConfig(rows=8, cols=8, block=4, mant_bits=8, exp_bits=6, acc_bits=32)
    rng = np.random.default_rng(3)
    v = rng.standard_normal((5, 8)) * 10.0 ** rng.integers(-3, 3, (5, 1))
    m, e = bfp.encode(cfg, v)
    assert m.min() >= cfg.mant_min and m.max() <= cfg.mant_max
    back = bfp.decode(cfg, m, e)
    assert np.all(np.abs(back - v) <= 2.0 ** np.repeat(e, 4, axis=1) / 2)
    m0, e0 = bfp.encode(cfg, np.zeros((1, 8)))
    assert not m0.any() and (e0 == cfg.exp_min).all()
