"""Random matrices and input vectors for the MVU that reach every corner of the arithmetic.

The operand kinds are ``hw.random_tiles``' (typical, extreme, zeros, rounding,
saturating), with its mantissa, exponent and accumulator-exponent pickers: a matrix
is typical or extreme, and each run of vectors has a kind of its own.
"""
from __future__ import annotations

import numpy as np

from hw.config import MvuConfig
from hw.mvu import golden
from hw.random_tiles import KINDS, exponents, mantissas, pick_acc_exp

__all__ = ["KINDS", "random_matrix", "random_vectors"]


def random_matrix(cfg: MvuConfig, rng: np.random.Generator, m: int, k: int,
                  extreme: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """An (M, K) matrix padded to whole words, ``(w_mant (M, Kp), w_exp (M, Kp/block))``:
    the columns past K are zeros, as a model's padding would be."""
    kp = -(-k // cfg.lanes) * cfg.lanes
    w_mant = mantissas(cfg, rng, (m, kp), extreme)
    w_mant[:, k:] = 0
    return w_mant, exponents(cfg, rng, (m, kp // cfg.block), extreme)


def random_vectors(cfg: MvuConfig, rng: np.random.Generator, w_mant: np.ndarray, w_exp: np.ndarray, t: int,
                   kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``t`` input vectors of ``kind`` for the matrix: ``(x_mant (T, Kp), x_exp (T, Kp/block),
    acc_exp (T,))``. The padding past K is random too: zero weights must ignore it."""
    kp = w_mant.shape[1]
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    extreme = kind == "extreme"
    x_mant = np.zeros((t, kp), np.int64) if kind == "zeros" else mantissas(cfg, rng, (t, kp), extreme)
    x_exp = exponents(cfg, rng, (t, kp // cfg.block), extreme)
    finest = golden.choose_acc_exp(cfg, w_mant, w_exp, x_mant, x_exp)
    acc_exp = np.array([pick_acc_exp(cfg, rng, kind, int(f)) for f in finest], np.int64)
    return x_mant, x_exp, acc_exp
