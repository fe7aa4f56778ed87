"""Random operand tiles that reach every corner of the arithmetic.

Shared by the RTL tests, ``python -m hw test-tile`` and the benchmark. Each kind
aims at one behaviour of the documented arithmetic; ``mixed`` cycles through all.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw import golden
from hw.config import HwConfig

__all__ = ["Tile", "KINDS", "random_tile", "random_tiles", "mantissas", "exponents", "pick_acc_exp"]

KINDS = ("typical", "extreme", "zeros", "rounding", "saturating")


@dataclass(frozen=True)
class Tile:
    """One tile's operands, shaped as :func:`hw.golden.tile_matmul` takes them."""

    w_mant: np.ndarray  # (rows, cols)
    w_exp: np.ndarray  # (n_blocks, cols)
    x_mant: np.ndarray  # (T, rows)
    x_exp: np.ndarray  # (T, n_blocks)
    acc_exp: int
    kind: str

    def golden(self, cfg: HwConfig) -> golden.TileResult:
        return golden.tile_matmul(cfg, self.w_mant, self.w_exp, self.x_mant, self.x_exp, self.acc_exp)


def mantissas(cfg, rng, shape, extreme: bool) -> np.ndarray:
    """Random mantissa codes; ``extreme``: mostly the corner codes."""
    if not extreme:
        return rng.integers(cfg.mant_min, cfg.mant_max + 1, shape)
    # Most negative, largest, zero, +-1 and random codes, mixed per element.
    special = np.array([cfg.mant_min, cfg.mant_max, 0, -1, 1])
    pick = rng.integers(0, len(special) + 1, shape)
    rand = rng.integers(cfg.mant_min, cfg.mant_max + 1, shape)
    return np.where(pick < len(special), special[np.minimum(pick, len(special) - 1)], rand)


def exponents(cfg, rng, shape, extreme: bool, centre: int = 0, spread: int = 3) -> np.ndarray:
    """Random exponents near ``centre``; ``extreme``: mostly the smallest, largest and 0."""
    if extreme:
        special = np.array([cfg.exp_min, cfg.exp_max, 0])
        pick = rng.integers(0, 4, shape)
        rand = rng.integers(cfg.exp_min, cfg.exp_max + 1, shape)
        return np.where(pick < 3, special[np.minimum(pick, 2)], rand)
    lo = max(cfg.exp_min, centre - spread)
    hi = min(cfg.exp_max, centre + spread)
    return rng.integers(lo, hi + 1, shape)


def random_tile(cfg: HwConfig, rng: np.random.Generator, n_vectors: int, kind: str = "typical") -> Tile:
    """A random tile of ``n_vectors`` vectors of the given kind (see ``KINDS``)."""
    wm_shape, we_shape = (cfg.rows, cfg.cols), (cfg.n_blocks, cfg.cols)
    xm_shape, xe_shape = (n_vectors, cfg.rows), (n_vectors, cfg.n_blocks)
    extreme = kind == "extreme"
    if kind == "zeros":
        wm, xm = np.zeros(wm_shape, np.int64), np.zeros(xm_shape, np.int64)
        if rng.integers(2):  # zero on one side only
            wm = mantissas(cfg, rng, wm_shape, True)
    else:
        wm, xm = mantissas(cfg, rng, wm_shape, extreme), mantissas(cfg, rng, xm_shape, extreme)
    we, xe = exponents(cfg, rng, we_shape, extreme), exponents(cfg, rng, xe_shape, extreme)
    acc_exp = pick_acc_exp(cfg, rng, kind, int(golden.choose_acc_exp(cfg, wm, we, xm, xe)))
    return Tile(wm, we, xm, xe, acc_exp, kind)


def pick_acc_exp(cfg, rng: np.random.Generator, kind: str, finest: int) -> int:
    """The accumulator exponent a ``kind`` of operands runs at, given the finest safe one
    (``choose_acc_exp``'s): that one, coarser (rounding), finer (saturating) or extreme."""
    if kind in ("typical", "zeros"):
        acc_exp = finest
    elif kind == "rounding":  # coarser than the products: most blocks are rounded
        acc_exp = finest + int(rng.integers(1, cfg.psum_bits + 3))
    elif kind == "saturating":  # finer than safe by about the headroom: large sums saturate
        acc_exp = finest - (cfg.acc_bits - cfg.psum_bits) - int(rng.integers(-2, cfg.psum_bits))
    elif kind == "extreme":
        choices = [cfg.acc_exp_min, cfg.acc_exp_max, finest, int(rng.integers(cfg.acc_exp_min, cfg.acc_exp_max + 1))]
        acc_exp = choices[int(rng.integers(len(choices)))]
    else:
        raise ValueError(f"unknown tile kind {kind!r}; known: {', '.join(KINDS)}")
    return int(np.clip(acc_exp, cfg.acc_exp_min, cfg.acc_exp_max))


def random_tiles(cfg: HwConfig, rng: np.random.Generator, count: int, max_vectors: int = 8, kind: str = "mixed"):
    """Yield ``count`` tiles with 1..max_vectors vectors; ``mixed`` cycles through ``KINDS``."""
    for i in range(count):
        k = KINDS[i % len(KINDS)] if kind == "mixed" else kind
        yield random_tile(cfg, rng, int(rng.integers(1, max_vectors + 1)), k)
