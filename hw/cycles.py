"""The cycle model: how many clock cycles the RTL takes, as formulas of the config.

The RTL's measured counts must equal these (``tests/hw`` checks every tested shape).
Where the numbers come from (see ``hw/rtl/bfp_tile.sv``):

* Each array column is a vertical pipeline of ``rows`` PE stages plus one combiner
  stage per exponent block, so a vector's last column result leaves the array
  ``rows + n_blocks + cols - 1`` cycles after the vector is accepted (the ``- 1``:
  column 0 starts at once, the skew adds ``cols - 1``).
* A tile is: ``start`` sampled (1 cycle), one vector accepted per cycle, the last
  result drained, then ``done``. Counting the clock edges from ``start`` to the one
  before ``done`` is high gives :func:`tile_cycles`.
* Weights load one array row per cycle.

Counts assume no stalls (inputs always valid, outputs always ready); every stall
cycle adds exactly one.
"""
from __future__ import annotations

from hw.config import HwConfig

__all__ = ["pipeline_latency", "tile_cycles", "load_cycles", "tile_seconds", "tile_macs"]


def pipeline_latency(cfg: HwConfig) -> int:
    """Cycles from a vector's acceptance to its result being presented at the output."""
    return cfg.rows + cfg.n_blocks + cfg.cols - 1


def tile_cycles(cfg: HwConfig, n_vectors: int) -> int:
    """Cycles for one tile of ``n_vectors`` input vectors, from ``start`` to ``done``."""
    if n_vectors < 1:
        raise ValueError(f"a tile needs at least one vector, got {n_vectors}")
    return n_vectors + pipeline_latency(cfg) + 1


def load_cycles(cfg: HwConfig) -> int:
    """Cycles to load a full weight tile (one row per cycle)."""
    return cfg.rows


def tile_seconds(cfg: HwConfig, n_vectors: int) -> float:
    """Modelled wall time of one tile at the config's clock."""
    return tile_cycles(cfg, n_vectors) / cfg.clock_hz


def tile_macs(cfg: HwConfig, n_vectors: int) -> int:
    """Multiply-accumulates a tile performs (useful work, for efficiency figures)."""
    return cfg.rows * cfg.cols * n_vectors
