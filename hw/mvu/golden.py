"""The golden model of the matrix-vector unit: one product ``y = W x`` per vector, bit for bit.

This is the specification the MVU's RTL is checked against and what the FPGA backend
runs in golden mode. Operands (``Kp`` = K padded to whole ``lanes`` words)::

    w_mant (M, Kp)           weight mantissas, one matrix row per output
    w_exp  (M, Kp/block)     weight block exponents (blocks run along K)
    x_mant (T, Kp)           T input vectors (each its own product: batch 1, T times)
    x_exp  (T, Kp/block)
    acc_exp (T,) or None     each product's accumulator LSB exponent; None: the rule
    split                    how many K-groups of tile engines share the product

The arithmetic is the systolic array's (``hw/README.md``, steps 1-4), with one
accumulator per output over the whole of K instead of one per weight tile:

1. ``S_b``: the exact integer dot product of block ``b`` (``block`` lanes).
2. ``s_b = w_exp[m, b] + x_exp[t, b] - acc_exp[t]``, aligned by ``hw.golden.align``
   (saturating left shift, round-to-nearest-even right shift).
3. The K words are dealt to ``split`` K-groups of tile engines, ``c = ceil(words /
   split)`` consecutive words each (the last groups may get fewer). Within a group
   the aligned blocks are added in K order with ``hw.golden.sat_add`` from 0; then
   the groups' sums are added in group order, again saturating.

``acc_exp`` by default is ``hw.golden.acc_exp_rule`` over each product (every block
of every output): at that exponent nothing can saturate, so the order of the adds
does not matter and the result is exact except for blocks rounded in step 2.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hw import golden
from hw.config import MvuConfig

_NONE = np.iinfo(np.int64).max  # hw.golden.acc_exp_stats' "no nonzero block"

__all__ = ["MvmResult", "check_operands", "weight_operand", "block_sums", "choose_acc_exp", "choose_acc_exp_from",
           "slice_stats", "acc_exp_of_slices", "mvm", "products"]


class MvmResult(NamedTuple):
    acc: np.ndarray  # (T, M) int64
    acc_exp: np.ndarray  # (T,) int64
    saturated: np.ndarray  # (T, M) bool: some step saturated

    def values(self) -> np.ndarray:
        """``acc * 2**acc_exp`` as float64 (exact for |acc| < 2**53)."""
        return np.ldexp(self.acc.astype(np.float64), self.acc_exp[:, None])


def check_operands(cfg: MvuConfig, w_mant, w_exp, x_mant, x_exp):
    """Validate shapes and ranges; return the operands as int64 arrays."""
    arrays = [np.asarray(a) for a in (w_mant, w_exp, x_mant, x_exp)]
    names = ("w_mant", "w_exp", "x_mant", "x_exp")
    for name, a in zip(names, arrays):
        if a.dtype.kind not in "iu" or a.ndim != 2:
            raise TypeError(f"{name} must be a 2-D integer array, got {a.dtype} of rank {a.ndim}")
    w_mant, w_exp, x_mant, x_exp = arrays
    m, kp = w_mant.shape
    t = x_mant.shape[0]
    if kp < 1 or kp % cfg.lanes or m < 1 or t < 1:
        raise ValueError(f"w_mant has shape {w_mant.shape}: expected (M >= 1, Kp), Kp a positive multiple "
                         f"of lanes ({cfg.lanes}), and T >= 1 vectors")
    want = {"w_exp": (w_exp, (m, kp // cfg.block)), "x_mant": (x_mant, (t, kp)),
            "x_exp": (x_exp, (t, kp // cfg.block))}
    for name, (a, shape) in want.items():
        if a.shape != shape:
            raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    ranges = (("w_mant", w_mant, cfg.mant_min, cfg.mant_max), ("x_mant", x_mant, cfg.mant_min, cfg.mant_max),
              ("w_exp", w_exp, cfg.exp_min, cfg.exp_max), ("x_exp", x_exp, cfg.exp_min, cfg.exp_max))
    for name, a, lo, hi in ranges:
        if a.size and (a.min() < lo or a.max() > hi):
            bad = a[(a < lo) | (a > hi)].flat[0]
            raise ValueError(f"{name} value {bad} outside [{lo}, {hi}]")
    return tuple(a.astype(np.int64) for a in arrays)


def weight_operand(cfg: MvuConfig, w_mant: np.ndarray) -> np.ndarray:
    """``w_mant`` (M, Kp) as the float64 (n_blocks, block, M) operand of :func:`block_sums`
    (exact; made once per matrix)."""
    m, kp = w_mant.shape
    return np.ascontiguousarray(w_mant.reshape(m, kp // cfg.block, cfg.block).transpose(1, 2, 0), np.float64)


def block_sums(cfg: MvuConfig, ws: np.ndarray, x_mant: np.ndarray) -> np.ndarray:
    """Every block's integer dot product: (T, n_blocks, M) int64, ``ws`` from
    :func:`weight_operand`.

    A float64 matmul (BLAS), exact: every partial sum is an integer below
    ``2**psum_bits < 2**53``.
    """
    nb, b, _ = ws.shape
    xs = x_mant.reshape(-1, nb, 1, b).astype(np.float64)  # (T, nb, 1, b)
    return np.matmul(xs, ws)[:, :, 0, :].astype(np.int64)


def _exponents(w_exp: np.ndarray, x_exp: np.ndarray) -> np.ndarray:
    """Block product exponents, (T, n_blocks, M)."""
    return w_exp.T[None, :, :] + x_exp[:, :, None]


def _rule(cfg: MvuConfig, sums: np.ndarray, e: np.ndarray) -> np.ndarray:
    # acc_exp_rule reduces over (n_blocks, T, cols): one product is (n_blocks, 1, M).
    return golden.acc_exp_rule(cfg, sums[:, :, None, :], e[:, :, None, :])


def choose_acc_exp(cfg: MvuConfig, w_mant, w_exp, x_mant, x_exp) -> np.ndarray:
    """Each product's finest accumulator exponent at which nothing can saturate: (T,)."""
    w_mant, w_exp, x_mant, x_exp = check_operands(cfg, w_mant, w_exp, x_mant, x_exp)
    return choose_acc_exp_from(cfg, weight_operand(cfg, w_mant), w_exp, x_mant, x_exp)


def choose_acc_exp_from(cfg: MvuConfig, ws: np.ndarray, w_exp: np.ndarray, x_mant: np.ndarray,
                        x_exp: np.ndarray) -> np.ndarray:
    """:func:`choose_acc_exp` on checked operands, ``ws`` from :func:`weight_operand`."""
    return _rule(cfg, block_sums(cfg, ws, x_mant), _exponents(w_exp, x_exp))


def slice_stats(cfg: MvuConfig, ws: np.ndarray, w_exp: np.ndarray, x_mant: np.ndarray,
                x_exp: np.ndarray) -> np.ndarray:
    """What the rule reads of one slice of a product's rows (``hw.golden.acc_exp_stats``):
    (T, 2) float64, each product's finest nonzero block exponent (inf: none) and peak."""
    finest, peak = golden.acc_exp_stats(*(a[:, :, None, :] for a in (block_sums(cfg, ws, x_mant),
                                                                       _exponents(w_exp, x_exp))))
    return np.stack([np.where(finest == _NONE, np.inf, finest), peak], axis=-1)


def acc_exp_of_slices(cfg: MvuConfig, stats: list[np.ndarray]) -> np.ndarray:
    """The exponent the rule picks for the whole product, (T,), from every row slice's
    ``slice_stats``: the finest of their finest exponents, the largest of their peaks."""
    s = np.stack(stats)
    finest, peak = s[..., 0].min(axis=0), s[..., 1].max(axis=0)
    whole = np.full(finest.shape, _NONE, np.int64)
    seen = np.isfinite(finest)
    whole[seen] = finest[seen].astype(np.int64)
    return golden.acc_exp_choose(cfg, whole, peak)


def group_bounds(cfg: MvuConfig, kp: int, split: int) -> list[tuple[int, int]]:
    """Each K-group's range of blocks: ``c = ceil(words / split)`` words a group."""
    if split < 1 or cfg.tiles % split:
        raise ValueError(f"split {split} does not divide the {cfg.tiles} tile engines")
    words = kp // cfg.lanes
    c = -(-words // split)
    nb = cfg.n_blocks
    return [(min(g * c, words) * nb, min((g + 1) * c, words) * nb) for g in range(split)]


def accumulate(cfg: MvuConfig, aligned: np.ndarray, sat: np.ndarray, kp: int, split: int):
    """Step 3 for aligned blocks (T, n_blocks, M): ``(acc, saturated)``, both (T, M).

    When the blocks' magnitudes cannot reach the accumulator's range in any order, no
    add saturates and the sum is the plain integer sum (the fast path, always taken at
    the rule's exponent); otherwise the adds run one by one in the defined order.
    """
    saturated = sat.any(axis=1)
    bound = np.abs(aligned).astype(np.float64).sum(axis=1)
    if bound.max(initial=0.0) < cfg.acc_max * (1 - 1e-9):  # float64 bound, with margin
        return aligned.sum(axis=1), saturated
    total = None
    for lo, hi in group_bounds(cfg, kp, split):
        acc = np.zeros(aligned.shape[::2], np.int64)
        for b in range(lo, hi):
            acc, s = golden.sat_add(cfg, acc, aligned[:, b])
            saturated |= s
        if total is None:
            total = acc
        else:
            total, s = golden.sat_add(cfg, total, acc)
            saturated |= s
    return total, saturated


def mvm(cfg: MvuConfig, w_mant, w_exp, x_mant, x_exp, acc_exp=None, split: int = 1) -> MvmResult:
    """``T`` matrix-vector products ``y[t] = W x[t]`` as the MVU computes them."""
    w_mant, w_exp, x_mant, x_exp = check_operands(cfg, w_mant, w_exp, x_mant, x_exp)
    return products(cfg, weight_operand(cfg, w_mant), w_exp, x_mant, x_exp, acc_exp, split)


def products(cfg: MvuConfig, ws: np.ndarray, w_exp: np.ndarray, x_mant: np.ndarray, x_exp: np.ndarray,
             acc_exp=None, split: int = 1) -> MvmResult:
    """:func:`mvm` on checked int64 operands, the weights as :func:`weight_operand` made
    them (the FPGA backend's golden engine: no per-request checks or conversions)."""
    sums = block_sums(cfg, ws, x_mant)
    e = _exponents(w_exp, x_exp)
    if acc_exp is None:
        acc_exp = _rule(cfg, sums, e)
    acc_exp = np.broadcast_to(np.asarray(acc_exp, np.int64), (x_mant.shape[0],))
    if acc_exp.min() < cfg.acc_exp_min or acc_exp.max() > cfg.acc_exp_max:
        raise ValueError(f"acc_exp outside [{cfg.acc_exp_min}, {cfg.acc_exp_max}]")
    aligned, sat, _ = golden.align(cfg, sums, e - acc_exp[:, None, None])
    acc, saturated = accumulate(cfg, aligned, sat, x_mant.shape[1], split)
    return MvmResult(acc, np.array(acc_exp), saturated)
