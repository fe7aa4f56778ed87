"""Where a matrix lives in the MVU: rows dealt to dot-product engines, K to words.

A product with ``split`` K-groups uses ``tiles / split`` tile engines per group, so
one *pass* produces ``rows_per_pass = tiles / split * dpes`` outputs. Tile engine
``te = kg * (tiles / split) + rg`` (K-group ``kg``, row group ``rg``) holds, at word
``base + p * c + j``, for each DPE ``d``, the ``lanes`` weights of matrix row
``p * rows_per_pass + rg * dpes + d`` in K-word ``kg * c + j`` (``c`` words per group).
Rows past M and words past K are zeros (exponent ``exp_min``). Each pass reads ``c``
words, one per cycle; the groups' accumulators are then added (``hw.mvu.golden``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hw.config import MvuConfig

__all__ = ["Shape", "shape", "pack"]


class Shape(NamedTuple):
    """How one (M, K) product runs: ``n_pass`` passes of ``c`` words, ``split`` K-groups."""

    m: int
    k: int
    split: int
    n_pass: int
    c: int  # words (cycles) per pass

    @property
    def words(self) -> int:
        """Weight words the product takes in each tile engine's memory."""
        return self.n_pass * self.c


def shape(cfg: MvuConfig, m: int, k: int, split: int) -> Shape:
    if split < 1 or cfg.tiles % split:
        raise ValueError(f"split {split} does not divide the {cfg.tiles} tile engines")
    rows = cfg.tiles // split * cfg.dpes
    words = -(-k // cfg.lanes)
    return Shape(m, k, split, -(-m // rows), -(-words // split))


def pack(cfg: MvuConfig, w_mant: np.ndarray, w_exp: np.ndarray, s: Shape) -> tuple[np.ndarray, np.ndarray]:
    """A matrix (M, Kp) as memory words: ``(mant (tiles, words, dpes, lanes),
    exp (tiles, words, dpes, n_blocks))``, word ``p * c + j`` as the module doc says."""
    per = cfg.tiles // s.split
    rows, kw = s.n_pass * per * cfg.dpes, s.split * s.c
    mant = np.zeros((rows, kw * cfg.lanes), np.int64)
    exp = np.full((rows, kw * cfg.n_blocks), cfg.exp_min, np.int64)
    mant[:w_mant.shape[0], :w_mant.shape[1]] = w_mant
    exp[:w_exp.shape[0], :w_exp.shape[1]] = w_exp
    # (n_pass, rg, d, kg, j, lanes) -> (kg, rg, n_pass, j, d, lanes): te = kg * per + rg
    mant = mant.reshape(s.n_pass, per, cfg.dpes, s.split, s.c, cfg.lanes).transpose(3, 1, 0, 4, 2, 5)
    exp = exp.reshape(s.n_pass, per, cfg.dpes, s.split, s.c, cfg.n_blocks).transpose(3, 1, 0, 4, 2, 5)
    return (np.ascontiguousarray(mant.reshape(cfg.tiles, s.words, cfg.dpes, cfg.lanes)),
            np.ascontiguousarray(exp.reshape(cfg.tiles, s.words, cfg.dpes, cfg.n_blocks)))
