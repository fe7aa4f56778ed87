"""The MVU's cycle model: formulas of the config that the RTL's counters must equal.

One product (one input vector, batch 1) of an (M, K) matrix with ``split`` K-groups
(``hw.mvu.layout``): ``start`` is sampled (1 cycle), then the sequencer issues one
word read a cycle for ``n_pass * c`` cycles, and the last word's result leaves the
pipeline ``PIPELINE`` cycles later: the weight memory read, the lanes' multiplies
with the blocks' alignment, the accumulate, and the K-groups' add with the output
write. Counted from ``start`` to the cycle before ``done``, as the systolic array's
tiles are. Every stall cycle (the sequencer held) adds exactly one.

Weights are written once, at model load: each tile engine's memory takes a word a
cycle, all tile engines at once.
"""
from __future__ import annotations

from hw.config import MvuConfig
from hw.mvu.layout import Shape, shape

__all__ = ["PIPELINE", "product_cycles", "best_shape", "write_cycles", "product_macs"]

PIPELINE = 4  # read, multiply-align, accumulate, group add and write


def product_cycles(s: Shape) -> int:
    """Cycles of one matrix-vector product, from ``start`` to ``done``."""
    return 1 + s.n_pass * s.c + PIPELINE


def best_shape(cfg: MvuConfig, m: int, k: int, whole_m: int = 0) -> Shape:
    """The split of the tile engines over K with the fewest cycles (the fewest groups on a
    tie); for ``m`` rows sliced from a product of ``whole_m``, the whole's split (a
    saturating sum's order is the split's: the slice keeps the whole's outputs)."""
    if whole_m:
        return shape(cfg, m, k, best_shape(cfg, whole_m, k).split)
    return min((shape(cfg, m, k, s) for s in cfg.splits()), key=lambda s: (product_cycles(s), s.split))


def write_cycles(s: Shape) -> int:
    """Cycles to write one product's weights into the tile engines' memories."""
    return s.words


def product_macs(s: Shape) -> int:
    """Useful multiply-accumulates of one product (unpadded)."""
    return s.m * s.k
