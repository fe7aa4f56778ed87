"""The golden model: the systolic array's arithmetic in numpy, bit for bit.

This is the specification the RTL (``hw/rtl``) is checked against, and what the
FPGA backend runs to serve requests fast. It is vectorised over the vectors and
columns of a tile.

API (all integers are plain numpy integer arrays; ``T`` = vectors in the tile)::

    tile_matmul(cfg, w_mant, w_exp, x_mant, x_exp, acc_exp=None) -> TileResult
        w_mant (rows, cols)      weight mantissas
        w_exp  (n_blocks, cols)  weight block exponents
        x_mant (T, rows)         input vectors' mantissas
        x_exp  (T, n_blocks)     input vectors' block exponents
        acc_exp                  accumulator LSB exponent; None: choose_acc_exp(...)
      TileResult.acc       (T, cols) int64: y = x @ W is acc * 2**acc_exp
      TileResult.acc_exp   int
      TileResult.saturated (T, cols) bool: some step saturated (result clipped)
      TileResult.inexact   (T, cols) bool: some block lost bits to rounding

    choose_acc_exp(cfg, w_mant, w_exp, x_mant, x_exp) -> int
        the finest accumulator exponent at which no saturation can occur: the tile
        is then exact if every block product exponent is >= it.

The arithmetic, for each vector t and column c (blocks b in order 0, 1, ...):

1. ``S_b = sum_k x_mant[t, k] * w_mant[k, c]`` over the block's ``block`` rows:
   an exact integer of ``cfg.psum_bits`` bits (it cannot overflow).
2. ``s_b = w_exp[b, c] + x_exp[t, b] - acc_exp`` (exact).
3. Align (:func:`align`): if ``s_b >= 0``, ``S_b * 2**s_b`` saturated to
   ``acc_bits`` (two's complement); if ``s_b < 0``, ``S_b / 2**-s_b`` rounded to
   nearest, ties to even.
4. ``acc = sat(acc + aligned_b)`` (:func:`sat_add`), starting from 0; a saturated
   aligned term is added as the saturated value.

So if nothing saturates, ``|acc * 2**acc_exp - exact| <= n_rounded * 2**(acc_exp-1)``
where ``n_rounded`` (at most ``n_blocks``) counts the blocks with ``s_b < 0``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hw.config import HwConfig

__all__ = ["TileResult", "tile_matmul", "choose_acc_exp", "acc_exp_rule", "acc_exp_stats", "acc_exp_choose",
           "block_sums", "align", "sat_add", "check_operands"]


class TileResult(NamedTuple):
    acc: np.ndarray  # (T, cols) int64
    acc_exp: int
    saturated: np.ndarray  # (T, cols) bool
    inexact: np.ndarray  # (T, cols) bool

    def values(self) -> np.ndarray:
        """The result as float64: ``acc * 2**acc_exp`` (exact for |acc| < 2**53)."""
        return np.ldexp(self.acc.astype(np.float64), self.acc_exp)


def _check_range(name: str, a: np.ndarray, lo: int, hi: int) -> None:
    if a.size and (a.min() < lo or a.max() > hi):
        bad = a[(a < lo) | (a > hi)].flat[0]
        raise ValueError(f"{name} value {bad} outside [{lo}, {hi}]")


def check_operands(cfg: HwConfig, w_mant, w_exp, x_mant, x_exp):
    """Validate shapes and ranges; return the operands as int64 arrays."""
    w_mant, w_exp, x_mant, x_exp = (np.asarray(a) for a in (w_mant, w_exp, x_mant, x_exp))
    for name, a in (("w_mant", w_mant), ("w_exp", w_exp), ("x_mant", x_mant), ("x_exp", x_exp)):
        if a.dtype.kind not in "iu":
            raise TypeError(f"{name} must be an integer array, got {a.dtype}")
    t = x_mant.shape[0] if x_mant.ndim == 2 else -1
    want = {
        "w_mant": (w_mant, (cfg.rows, cfg.cols)),
        "w_exp": (w_exp, (cfg.n_blocks, cfg.cols)),
        "x_mant": (x_mant, (t, cfg.rows)),
        "x_exp": (x_exp, (t, cfg.n_blocks)),
    }
    for name, (a, shape) in want.items():
        if a.shape != shape or t < 1:
            raise ValueError(f"{name} has shape {a.shape}, expected {shape} (T >= 1 vectors)")
    _check_range("w_mant", w_mant, cfg.mant_min, cfg.mant_max)
    _check_range("x_mant", x_mant, cfg.mant_min, cfg.mant_max)
    _check_range("w_exp", w_exp, cfg.exp_min, cfg.exp_max)
    _check_range("x_exp", x_exp, cfg.exp_min, cfg.exp_max)
    return tuple(a.astype(np.int64) for a in (w_mant, w_exp, x_mant, x_exp))


def block_sums(cfg: HwConfig, w_mant: np.ndarray, x_mant: np.ndarray) -> np.ndarray:
    """Integer dot products within each block: shape (n_blocks, T, cols), int64.

    Computed as a float64 matmul (BLAS) because it is exact: every partial sum is
    an integer below ``2**psum_bits <= 2**38 < 2**53``.
    """
    nb, b = cfg.n_blocks, cfg.block
    xs = x_mant.reshape(-1, nb, b).transpose(1, 0, 2).astype(np.float64)  # (nb, T, b)
    ws = w_mant.reshape(nb, b, cfg.cols).astype(np.float64)  # (nb, b, cols)
    return np.matmul(xs, ws).astype(np.int64)


def align(cfg: HwConfig, s: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale block sums ``s`` by ``2**shift`` into accumulator units.

    Left shifts saturate to ``acc_bits``; right shifts round to nearest, ties to
    even. The right shift clamps at ``acc_bits - 1``, which changes nothing since a
    block sum has fewer bits (config check): any larger shift also rounds to 0.
    Returns ``(aligned, saturated, inexact)``.
    """
    a = cfg.acc_bits
    left = shift >= 0
    # Left: S << sl fits in a bits iff -2**(a-1-sl) <= S < 2**(a-1-sl).
    sl = np.clip(shift, 0, a)
    lim = np.left_shift(np.int64(1), np.clip(a - 1 - sl, 0, a - 1))
    fits = (s == 0) | ((sl < a) & (s >= -lim) & (s < lim))
    shifted = np.left_shift(np.where(fits, s, 0), np.minimum(sl, a - 1))
    left_val = np.where(fits, shifted, np.where(s < 0, cfg.acc_min, cfg.acc_max))
    # Right: round to nearest even, from floor quotient and non-negative remainder.
    r = np.clip(-shift, 1, a - 1)
    q = np.right_shift(s, r)
    rem = s - np.left_shift(q, r)
    half = np.left_shift(np.int64(1), r - 1)
    up = (rem > half) | ((rem == half) & ((q & 1) == 1))
    right_val = q + up
    aligned = np.where(left, left_val, right_val)
    saturated = left & ~fits
    inexact = ~left & (rem != 0)
    return aligned, saturated, inexact


def sat_add(cfg: HwConfig, acc: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``acc + x`` saturated to ``acc_bits``; returns ``(sum, saturated)``.

    Exact in int64: both terms fit in 63 bits, so their sum fits in 64.
    """
    total = acc + x
    clipped = np.clip(total, cfg.acc_min, cfg.acc_max)
    return clipped, clipped != total


def _shifts(cfg, w_exp, x_exp, acc_exp) -> np.ndarray:
    """Per-block shift amounts, shape (n_blocks, T, cols)."""
    return w_exp[:, None, :] + x_exp.T[:, :, None] - acc_exp


def tile_matmul(cfg: HwConfig, w_mant, w_exp, x_mant, x_exp, acc_exp: int | None = None) -> TileResult:
    """One tile of the block-floating-point product ``y = x @ W``, as the RTL computes it."""
    w_mant, w_exp, x_mant, x_exp = check_operands(cfg, w_mant, w_exp, x_mant, x_exp)
    sums = block_sums(cfg, w_mant, x_mant)
    if acc_exp is None:
        acc_exp = _choose(cfg, sums, w_exp, x_exp)
    acc_exp = int(acc_exp)
    if not cfg.acc_exp_min <= acc_exp <= cfg.acc_exp_max:
        raise ValueError(f"acc_exp {acc_exp} outside [{cfg.acc_exp_min}, {cfg.acc_exp_max}]")
    aligned, sat, inexact = align(cfg, sums, _shifts(cfg, w_exp, x_exp, acc_exp))
    acc = np.zeros(sums.shape[1:], dtype=np.int64)
    saturated = sat.any(axis=0)
    for b in range(cfg.n_blocks):  # sequential: saturation makes the order matter
        acc, s = sat_add(cfg, acc, aligned[b])
        saturated |= s
    return TileResult(acc, acc_exp, saturated, inexact.any(axis=0))


def acc_exp_rule(cfg: HwConfig, sums: np.ndarray, e: np.ndarray) -> np.ndarray:
    """The accumulator-exponent rule for a stack of tiles (the one place it is written).

    ``sums``, ``e``: (..., n_blocks, T, cols) block sums and block product exponents;
    returns (...) int64: the finest exponent at which no column can saturate. The
    largest magnitude a column can reach is taken in float64 (over-estimating by
    at most a rounding; the margin of 3 bits covers it and the rounding
    increments), adding the blocks in order 0, 1, ... so every caller rounds alike.
    """
    return acc_exp_choose(cfg, *acc_exp_stats(sums, e))


def acc_exp_stats(sums: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the rule reads of ``sums`` and ``e`` (as ``acc_exp_rule``'s): the finest
    exponent of a nonzero block (int64 max where none) and the largest magnitude a
    column can reach. Both reduce over columns by min and max, so the statistics of
    the whole are those of its column slices combined (a product split by rows over
    devices agrees on the whole's exponent from them)."""
    nonzero = sums != 0
    finest = np.where(nonzero, e, np.iinfo(np.int64).max).min(axis=(-3, -2, -1))
    mag = np.ldexp(np.abs(sums).astype(np.float64), e)
    peak = mag[..., 0, :, :]
    for b in range(1, mag.shape[-3]):
        peak = peak + mag[..., b, :, :]
    return finest, peak.max(axis=(-2, -1))


def acc_exp_choose(cfg: HwConfig, finest: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """The rule's exponent from ``acc_exp_stats``' two statistics (0 where every block is zero)."""
    with np.errstate(divide="ignore"):
        needed = np.floor(np.log2(np.where(peak > 0, peak, 1.0))).astype(np.int64) + 3 - cfg.acc_bits
    chosen = np.clip(np.maximum(finest, needed), cfg.acc_exp_min, cfg.acc_exp_max)
    return np.where(finest != np.iinfo(np.int64).max, chosen, 0)


def _choose(cfg: HwConfig, sums: np.ndarray, w_exp: np.ndarray, x_exp: np.ndarray) -> int:
    return int(acc_exp_rule(cfg, sums, _shifts(cfg, w_exp, x_exp, 0)))


def choose_acc_exp(cfg: HwConfig, w_mant, w_exp, x_mant, x_exp) -> int:
    """The finest accumulator exponent at which this tile cannot saturate.

    If every block's product exponent is at least the returned value the tile's
    result is exact; otherwise the smallest blocks are rounded (see module doc).
    """
    w_mant, w_exp, x_mant, x_exp = check_operands(cfg, w_mant, w_exp, x_mant, x_exp)
    return _choose(cfg, block_sums(cfg, w_mant, x_mant), w_exp, x_exp)
