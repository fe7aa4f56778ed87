"""The matrix-vector unit's engines: every product of a ``MatMul`` on the MVU, golden or RTL.

* ``golden_products``: ``hw.mvu.golden.products`` per group, on the weights' BLAS
  operands made once at load (the serving default, and how big configs run).
* ``RtlMvuEngine``: the Verilated MVU (``hw.mvu.sim.MvuSim``). Every pinned matrix is
  written into the tile engines' weight memories once, when the engine is made, at
  consecutive word addresses (``hw.mvu.layout.pack``); a run-time weight operand is
  written after them before its products. Each product's accumulator exponent is
  the one ``hw.mvu.golden``'s rule picks, so both engines agree bit for bit.

Both return the products' values ``acc * 2**acc_exp`` (G, T, N) in float64 (exact);
the runtime rounds them once to float32.
"""
from __future__ import annotations

import numpy as np

from hw.config import MvuConfig
from hw.mvu import golden, layout

from backends.base import ModelLoadFailed
from backends.fpga.isa import MvuWeights


def golden_products(cfg: MvuConfig, w: MvuWeights, xm: np.ndarray, xe: np.ndarray,
                    acc_exp: np.ndarray | None = None) -> np.ndarray:
    """(G, T, N) values of every product, on the golden model; ``acc_exp`` (T,): the
    accumulator exponents (a row slice's: the whole product's), else the rule's."""
    out = np.empty((xm.shape[0], xm.shape[1], w.n))
    for g, ws in enumerate(w.blas_operands):
        r = golden.products(cfg, ws, w.exp[g], xm[g], xe[g], acc_exp, split=w.shape.split)
        out[g] = r.values()
    return out


class RtlMvuEngine:
    """Products on the Verilated MVU; keeps the cycle counts its counters reported."""

    def __init__(self, cfg: MvuConfig, pinned: list[MvuWeights]):
        from hw.mvu.sim import MvuSim  # builds or reuses the cached Verilator model

        self.cfg = cfg
        self.sim = MvuSim(cfg)
        self.matrix_cycles = 0  # what the MVU's counters reported: the cycle model's matmul_cycles
        self.bases: dict[int, list[int]] = {}
        self.free = 0
        for w in pinned:
            self.bases[id(w)] = [self._write(w, g) for g in range(w.mant.shape[0])]
        self.scratch = self.free

    def _write(self, w: MvuWeights, g: int) -> int:
        base = self.free
        if base + w.shape.words > self.cfg.mem_words:
            raise ModelLoadFailed(f"a {w.k}x{w.n} weight operand needs {w.shape.words} words of each tile "
                                  f"engine's memory; {self.cfg.mem_words - base} of {self.cfg.mem_words} are free")
        self.sim.write_weights(base, *layout.pack(self.cfg, w.mant[g], w.exp[g], w.shape))
        self.free = base + w.shape.words
        return base

    def __call__(self, cfg: MvuConfig, w: MvuWeights, xm: np.ndarray, xe: np.ndarray,
                 acc_exp: np.ndarray | None = None) -> np.ndarray:
        bases = self.bases.get(id(w))
        if bases is None:  # a run-time weight operand: written into the free words, then run
            self.free = self.scratch
            bases = [self._write(w, g) for g in range(w.mant.shape[0])]
        out = np.empty((xm.shape[0], xm.shape[1], w.n))
        for g, ws in enumerate(w.blas_operands):
            exps = golden.choose_acc_exp_from(cfg, ws, w.exp[g], xm[g], xe[g]) if acc_exp is None else acc_exp
            acc, cycles, _ = self.sim.run(xm[g], xe[g], exps, bases[g], w.shape)
            self.matrix_cycles += int(cycles.sum())
            out[g] = np.ldexp(acc.astype(np.float64), exps[:, None])
        return out

    def close(self) -> None:
        self.sim.close()
