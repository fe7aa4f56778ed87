"""The Verilated matrix-vector unit through its C ABI (``hw/mvu/csrc/harness.cpp``), via ctypes.

    from hw.mvu import layout
    s = layout.shape(cfg, m, k, split)
    mem_mant, mem_exp = layout.pack(cfg, w_mant, w_exp, s)
    with MvuSim(cfg) as sim:                       # builds or reuses the cached model
        sim.write_weights(base, mem_mant, mem_exp)  # once, at model load -> cycles
        acc, cycles, stalls = sim.run(x_mant, x_exp, acc_exp, base, s, stall_pct=20)

``acc`` is (T, M) int64, bit-exact with ``hw.mvu.golden.mvm(cfg, w_mant, w_exp, x_mant,
x_exp, acc_exp, split).acc``; ``cycles`` (T,) is each product's count from start to
done, ``hw.mvu.cycles.product_cycles(s) + stalls``. A run of T products is one call
into C.
"""
from __future__ import annotations

import ctypes
from typing import NamedTuple

import numpy as np

from hw.config import MvuConfig
from hw.mvu.layout import Shape, shape as layout_shape
from hw.sim import SimError, open_model

__all__ = ["MvuSim", "MvuRun", "SimError"]

_ABI_VERSION = 1
_ERRORS = {-1: "timed out (the product never finished)", -2: "arguments refused by the harness",
           -3: "busy: the unit is running a product"}


class MvuRun(NamedTuple):
    """What :meth:`MvuSim.run` returns, for T products."""

    acc: np.ndarray  # (T, M) int64
    cycles: np.ndarray  # (T,) int64: start to done, stalls included
    stalls: np.ndarray  # (T,) int64: stall cycles inserted


def _load(cfg: MvuConfig) -> ctypes.CDLL:
    lib, new = open_model(cfg, "mvu", _ABI_VERSION)
    if new:
        p, i32, u32 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_uint32
        lib.mvu_create.restype = p
        lib.mvu_free.argtypes = [p]
        lib.mvu_reset.argtypes = [p]
        lib.mvu_cycles.argtypes = [p]
        lib.mvu_cycles.restype = ctypes.c_uint64
        lib.mvu_write_weights.argtypes = [p, i32, i32, i32, p, p]
        lib.mvu_write_weights.restype = ctypes.c_int64
        lib.mvu_run.argtypes = [p, i32, p, p, i32, p, i32, i32, i32, i32, i32, p, p, p, u32, u32]
        lib.mvu_run.restype = ctypes.c_int64
    return lib


def _ints(a, name: str, shape: tuple, shown: str, lo: int, hi: int) -> np.ndarray:
    """``a`` as a C-contiguous int32 array of ``shape``, its values in [lo, hi]."""
    a = np.asarray(a)
    if a.shape != shape or a.dtype.kind not in "iu":
        raise ValueError(f"{name} has shape {a.shape} ({a.dtype}), expected an integer array of shape {shown}")
    if a.size and (a.min() < lo or a.max() > hi):
        raise ValueError(f"{name} value {a[(a < lo) | (a > hi)].flat[0]} outside [{lo}, {hi}]")
    return np.ascontiguousarray(a, dtype=np.int32)


class MvuSim:
    """One simulated matrix-vector unit (reset on creation); weights persist across runs."""

    def __init__(self, cfg: MvuConfig):
        if not isinstance(cfg, MvuConfig):
            raise TypeError(f"MvuSim needs an MvuConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self._lib = _load(cfg)
        self._h = self._lib.mvu_create()
        self.reset()

    def close(self) -> None:
        if getattr(self, "_h", None):
            self._lib.mvu_free(self._h)
            self._h = None

    __del__ = close

    def __enter__(self) -> "MvuSim":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _handle(self):
        if not self._h:
            raise SimError("the MvuSim is closed")
        return self._h

    @property
    def cycles(self) -> int:
        """Clock cycles simulated since creation (writes and output reads included)."""
        return self._lib.mvu_cycles(self._handle())

    def reset(self) -> None:
        """Two cycles of synchronous reset (weights are kept)."""
        self._lib.mvu_reset(self._handle())

    def write_weights(self, base: int, mem_mant, mem_exp) -> int:
        """Write ``layout.pack``'s words into every tile engine's memory from word ``base``:
        ``mem_mant (tiles, words, dpes, lanes)``, ``mem_exp (tiles, words, dpes, n_blocks)``.
        All tile engines take a word a cycle; returns the cycles (``words``)."""
        c = self.cfg
        mem_mant = np.asarray(mem_mant)
        words = mem_mant.shape[1] if mem_mant.ndim == 4 else -1
        mant = _ints(mem_mant, "mem_mant", (c.tiles, words, c.dpes, c.lanes),
                     f"(tiles={c.tiles}, words, dpes={c.dpes}, lanes={c.lanes})", c.mant_min, c.mant_max)
        exp = _ints(mem_exp, "mem_exp", (c.tiles, words, c.dpes, c.n_blocks),
                    f"(tiles={c.tiles}, {words}, dpes={c.dpes}, n_blocks={c.n_blocks})", c.exp_min, c.exp_max)
        if not (0 <= base and base + words <= c.mem_words):
            raise ValueError(f"words {base}..{base + words - 1} are past the weight memory "
                             f"(mem_words = {c.mem_words} per tile engine)")
        rc = self._lib.mvu_write_weights(self._handle(), -1, int(base), words, mant.ctypes.data, exp.ctypes.data)
        if rc < 0:
            raise SimError(f"weight write: {_ERRORS.get(rc, f'error {rc}')}")
        return rc

    def run(self, x_mant, x_exp, acc_exp, base: int, shape: Shape, *, stall_pct: int = 0, seed: int = 1) -> MvuRun:
        """T products ``y[t] = W x[t]`` of the matrix written at ``base`` with ``shape``
        (``layout.shape(cfg, m, k, split)``), one C call for all of them.

        ``x_mant (T, Kp)``, ``x_exp (T, Kp/block)`` (Kp: K padded to whole words, as
        ``hw.mvu.golden`` takes them); ``acc_exp``: (T,) or one int for all.
        ``stall_pct`` (0..99): the sequencer is held on that share of its cycles at
        random (seeded by ``seed``), each stall adding one cycle.
        """
        c = self.cfg
        if not isinstance(shape, Shape) or shape != layout_shape(c, shape.m, shape.k, shape.split):
            raise ValueError(f"shape {shape!r} is not layout.shape(cfg, m, k, split) for {c.name()}")
        words = -(-shape.k // c.lanes)
        if words > c.x_words:
            raise ValueError(f"K = {shape.k} needs {words} input words; the input buffer holds "
                             f"x_words = {c.x_words} (max_k = {c.max_k})")
        if shape.m > c.max_m:
            raise ValueError(f"M = {shape.m} outputs do not fit the output buffer (max_m = {c.max_m})")
        if not (0 <= base and base + shape.words <= c.mem_words):
            raise ValueError(f"the product's words {base}..{base + shape.words - 1} are past the weight memory "
                             f"(mem_words = {c.mem_words} per tile engine)")
        if not 0 <= stall_pct < 100:
            raise ValueError(f"stall_pct must be in 0..99, got {stall_pct}")
        x_mant = np.asarray(x_mant)
        t = x_mant.shape[0] if x_mant.ndim == 2 else -1
        kp = words * c.lanes
        x_mant = _ints(x_mant, "x_mant", (t, kp), f"(T, Kp={kp})", c.mant_min, c.mant_max)
        x_exp = _ints(x_exp, "x_exp", (t, kp // c.block), f"(T={t}, Kp/block={kp // c.block})",
                      c.exp_min, c.exp_max)
        if np.ndim(acc_exp) == 0:
            acc_exp = np.full(t, acc_exp)
        acc_exp = _ints(acc_exp, "acc_exp", (t,), f"(T={t},)", c.acc_exp_min, c.acc_exp_max)
        out = np.empty((t, shape.m), np.int64)
        counts = np.zeros((2, t), np.int64)  # cycles, stalls
        if t:
            rc = self._lib.mvu_run(self._handle(), t, x_mant.ctypes.data, x_exp.ctypes.data, words,
                                   acc_exp.ctypes.data, int(base), shape.n_pass, shape.c, shape.split, shape.m,
                                   out.ctypes.data, counts.ctypes.data, counts.ctypes.data + 8 * t,
                                   stall_pct, seed & 0xFFFFFFFF)
            if rc < 0:
                i = int(np.argmax(counts[0] < 0))
                raise SimError(f"product {i} of {t}: {_ERRORS.get(rc, f'error {rc}')}")
        return MvuRun(out, counts[0], counts[1])
