"""Cycles per instruction: the device-time model of a compiled program.

Static: at batch 1 every shape is known at compile time, so a program's cycles are
computed once at load and reported with each request.

* ``MatMul``: each weight tile is loaded from weight memory into the array
  (``hw.cycles.load_cycles``) and then streams all ``T`` vectors
  (``hw.cycles.tile_cycles``): the RTL's own counts, checked in RTL mode. No overlap
  between loading and streaming (the RTL has one weight register set). Input
  quantisation is in the streaming path (free); a run-time weight operand is first
  encoded by the vector unit.
* Vector instructions: the vector unit has one lane per array column (its input is one
  array output row per cycle), plus ``VECTOR_LATENCY`` cycles to fill its pipeline.
  Pooling reads every window element; softmax makes three passes; a reshape is
  free (addressing only).
* Host link (``Recv``, ``Send``, ``HostCall`` transfers): ``LINK_LATENCY_S`` per
  transfer plus bytes at ``LINK_BYTES_PER_S`` (PCIe gen3 x8-like), in device cycles.
  Host compute time is not device time and is not counted.

The three constants below are model assumptions not (yet) in ``HwConfig``; each is
written only here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hw import cycles as hw_cycles
from hw.config import HwConfig

from backends.fpga import isa

VECTOR_LATENCY = 4  # cycles: the vector unit's pipeline depth
LINK_BYTES_PER_S = 8e9
LINK_LATENCY_S = 1e-6


@dataclass(frozen=True)
class Cost:
    cycles: int
    macs: int = 0  # useful multiply-accumulates (unpadded)


def lanes(cfg: HwConfig) -> int:
    """Vector-unit lanes: one per array column."""
    return cfg.cols


def vector_cycles(cfg: HwConfig, elements: int) -> int:
    return math.ceil(elements / lanes(cfg)) + VECTOR_LATENCY


def link_cycles(cfg: HwConfig, nbytes: int) -> int:
    """One host-link transfer of ``nbytes``."""
    return math.ceil((LINK_LATENCY_S + nbytes / LINK_BYTES_PER_S) * cfg.clock_hz)


def matmul_tiles(cfg: HwConfig, ins: isa.MatMul) -> int:
    return ins.groups * math.ceil(ins.k / cfg.rows) * math.ceil(ins.n / cfg.cols)


def matmul_cycles(cfg: HwConfig, ins: isa.MatMul) -> int:
    """What the array itself spends (loads plus tiles): the figure the RTL reports."""
    return matmul_tiles(cfg, ins) * (hw_cycles.load_cycles(cfg) + hw_cycles.tile_cycles(cfg, ins.t))


def cost(cfg: HwConfig, ins: isa.Instruction) -> Cost:
    """Cycles (and useful MACs) of one body instruction."""
    if isinstance(ins, isa.MatMul):
        extra = vector_cycles(cfg, ins.groups * ins.k * ins.n) if ins.wsrc else 0
        return Cost(matmul_cycles(cfg, ins) + extra, ins.groups * ins.t * ins.k * ins.n)
    if isinstance(ins, isa.Im2Col):
        g = ins.geom
        return Cost(vector_cycles(cfg, g.groups * g.vectors * g.patch))
    if isinstance(ins, (isa.Unary, isa.Binary, isa.Slice, isa.Concat)):
        return Cost(vector_cycles(cfg, ins.size))
    if isinstance(ins, isa.Softmax):  # max, exp-and-sum, divide
        return Cost(3 * vector_cycles(cfg, int(np.prod(ins.shape))))
    if isinstance(ins, isa.Pool):
        g = ins.geom
        out = g.in_shape[0] * g.in_shape[1] * int(np.prod(g.out_spatial))
        return Cost(vector_cycles(cfg, out * int(np.prod(g.kernel))))
    if isinstance(ins, isa.Move):
        return Cost(0 if ins.perm is None else vector_cycles(cfg, int(np.prod(ins.shape))))
    if isinstance(ins, (isa.Recv, isa.Send)):
        return Cost(link_cycles(cfg, 4 * int(np.prod(ins.shape))))
    if isinstance(ins, isa.HostCall):
        return Cost(link_cycles(cfg, ins.in_bytes) + link_cycles(cfg, ins.out_bytes))
    raise TypeError(f"no cost for {type(ins).__name__}")


@dataclass(frozen=True)
class ProgramCost:
    cycles: int
    macs: int
    matmul_cycles: int  # the array's share, comparable with the RTL's counters

    def seconds(self, cfg: HwConfig) -> float:
        return self.cycles / cfg.clock_hz

    def utilisation(self, cfg: HwConfig) -> float:
        """Useful MACs over what the array could have done in the program's cycles."""
        return self.macs / (cfg.macs * self.cycles) if self.cycles else 0.0


def program_cost(cfg: HwConfig, body: list) -> ProgramCost:
    costs = [cost(cfg, ins) for ins in body]
    mm = sum(matmul_cycles(cfg, i) for i in body if isinstance(i, isa.MatMul))
    return ProgramCost(sum(c.cycles for c in costs), sum(c.macs for c in costs), mm)
