"""The Verilated tile model through its C ABI (``hw/csrc/harness.cpp``), via ctypes.

    sim = TileSim(cfg)                     # builds or reuses the cached model
    sim.load_weights(w_mant, w_exp)        # -> cycles
    acc, cycles = sim.run_tile(x_mant, x_exp, acc_exp)
    runs = sim.run_tiles(x_mant, x_exp, acc_exp, w_mant=w_mant, w_exp=w_exp)  # many tiles, one call
    sim.reset(); sim.poke("x_valid", 1); sim.tick(); sim.peek("x_ready")

Operands are shaped as in :mod:`hw.golden`; ``acc`` is (T, cols) int64, bit-exact
with ``golden.tile_matmul(...).acc``. ``run_tiles`` takes stacks of them (a leading
tile axis) and crosses into C once for all: a ctypes call and its numpy copies cost
a few microseconds, as much as a short tile's simulation.
"""
from __future__ import annotations

import ctypes
from pathlib import Path
from typing import NamedTuple

import numpy as np

from hw import build
from hw.config import HwConfig

__all__ = ["TileSim", "TileRuns", "SimError", "load_library", "open_model"]

_ABI_VERSION = 2
_ERRORS = {-1: "timed out (the tile never finished)", -2: "protocol error", -3: "busy: the array is running a tile"}
_I32P = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
_libs: dict[Path, ctypes.CDLL] = {}


class SimError(RuntimeError):
    """The simulated hardware reported an error (timeout, protocol, busy)."""


def open_model(cfg, prefix: str, abi_version: int) -> tuple[ctypes.CDLL, bool]:
    """Build or find the model for ``cfg`` (either engine's config) and load it once per
    process; check its ``<prefix>_abi_version()`` and ``<prefix>_params()``. Returns the
    library and whether it was loaded just now (its argtypes are then still to be set)."""
    path = build.build_model(cfg)
    if path in _libs:
        return _libs[path], False
    lib = ctypes.CDLL(str(path))
    version = getattr(lib, f"{prefix}_abi_version")
    version.restype = ctypes.c_int
    if version() != abi_version:
        raise SimError(f"{path}: ABI version {version()}, expected {abi_version}")
    want = list(cfg.verilog_params().values())
    params = (ctypes.c_int32 * len(want))()
    getattr(lib, f"{prefix}_params")(params)
    if list(params) != want:
        raise SimError(f"{path} was built for {list(params)}, not {cfg.verilog_params()}")
    _libs[path] = lib
    return lib, True


def load_library(cfg: HwConfig) -> ctypes.CDLL:
    """Build or find the model for ``cfg``, load it once per process, check its parameters."""
    lib, new = open_model(cfg, "bw", _ABI_VERSION)
    if not new:
        return lib
    lib.bw_create.restype = ctypes.c_void_p
    lib.bw_free.argtypes = [ctypes.c_void_p]
    lib.bw_reset.argtypes = [ctypes.c_void_p]
    lib.bw_cycles.argtypes = [ctypes.c_void_p]
    lib.bw_cycles.restype = ctypes.c_uint64
    lib.bw_load_weights.argtypes = [ctypes.c_void_p, _I32P, _I32P]
    lib.bw_load_weights.restype = ctypes.c_int64
    # run_tile is the hot call: its arrays go in as raw addresses of TileSim's own
    # buffers (an ndpointer argument costs microseconds per call in numpy's checks).
    lib.bw_run_tile.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32,
                                ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32]
    lib.bw_run_tile.restype = ctypes.c_int64
    p = ctypes.c_void_p
    lib.bw_run_tiles.argtypes = [p, ctypes.c_int32, p, p, p, p, p, p, ctypes.c_int32, ctypes.c_int32, p, p, p,
                                 ctypes.c_uint32, ctypes.c_uint32]
    lib.bw_run_tiles.restype = ctypes.c_int64
    lib.bw_poke.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, ctypes.c_uint64]
    lib.bw_peek.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, ctypes.POINTER(ctypes.c_uint64)]
    lib.bw_eval.argtypes = [ctypes.c_void_p]
    lib.bw_tick.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    return lib


def _check_shape(a: np.ndarray, shape, name: str = "operand", shown: str = "") -> None:
    """``shown``: the expected shape as the message gives it (free axes named)."""
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shown or shape}")


def _i32(a, shape, name: str = "operand", shown: str = "") -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.int32)
    _check_shape(a, shape, name, shown)
    return a


class TileRuns(NamedTuple):
    """What :meth:`TileSim.run_tiles` returns; N = tiles run, T = vectors per tile."""

    acc: np.ndarray  # (N, T, cols) int64
    tile_cycles: np.ndarray  # (N,) int64: each tile's cycles from start to done
    load_cycles: np.ndarray | None  # (N,) int64: each weight load's cycles; None when no weights were given


class TileSim:
    """One simulated array instance (reset on creation)."""

    def __init__(self, cfg: HwConfig):
        self.cfg = cfg
        self._lib = load_library(cfg)
        self._h = self._lib.bw_create()
        self._shape = (cfg.rows, cfg.n_blocks)
        self._run = self._lib.bw_run_tile  # bound once: run_tile is the hot path
        self._bufs = self._addrs = None
        self._grow(64)
        self.reset()

    def _grow(self, n: int) -> None:
        """(Re)allocate the run_tile buffers for at least ``n`` vectors."""
        c = self.cfg
        self._bufs = (np.zeros((n, c.rows), np.int32), np.zeros((n, c.n_blocks), np.int32),
                      np.zeros((n, c.cols), np.int64))
        self._addrs = tuple(b.ctypes.data for b in self._bufs)

    def close(self) -> None:
        if self._h:
            self._lib.bw_free(self._h)
            self._h = None

    __del__ = close

    def __enter__(self) -> "TileSim":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check(self, rc: int) -> int:
        if rc < 0:
            raise SimError(_ERRORS.get(rc, f"error {rc}"))
        return rc

    @property
    def cycles(self) -> int:
        """Clock cycles simulated since creation."""
        return self._lib.bw_cycles(self._h)

    def reset(self) -> None:
        """Two cycles of synchronous reset (weights are kept)."""
        self._lib.bw_reset(self._h)

    def load_weights(self, w_mant, w_exp) -> int:
        """Load a (rows, cols) weight tile and its (n_blocks, cols) exponents; return cycles."""
        c = self.cfg
        return self._check(self._lib.bw_load_weights(
            self._h, _i32(w_mant, (c.rows, c.cols)), _i32(w_exp, (c.n_blocks, c.cols))))

    def run_tile(self, x_mant, x_exp, acc_exp: int, *, stall_pct: int = 0, seed: int = 1) -> tuple[np.ndarray, int]:
        """Run one tile of T vectors; return ``(acc (T, cols) int64, cycles start..done)``.

        ``stall_pct`` (0..99) drops input valid and output ready at random each cycle.
        """
        # The hot path, about 2 us of Python around the C call: one shape test (the
        # messages only on failure), copies into the preallocated int32 buffers whose
        # addresses were taken once, and the result copied out.
        x_mant, x_exp = np.asarray(x_mant), np.asarray(x_exp)
        n = x_mant.shape[0] if x_mant.ndim == 2 else 0
        rows, n_blocks = self._shape
        if x_mant.shape != (n, rows) or x_exp.shape != (n, n_blocks):
            _check_shape(x_mant, (n, rows))
            _check_shape(x_exp, (n, n_blocks))
        if not 0 <= stall_pct < 100:
            raise ValueError(f"stall_pct must be in 0..99, got {stall_pct}")
        if n > len(self._bufs[0]):
            self._grow(n)
        xm, xe, y = self._bufs
        xm[:n] = x_mant  # converts to int32 as _i32 does
        xe[:n] = x_exp
        a_xm, a_xe, a_y = self._addrs
        cycles = self._run(self._h, a_xm, a_xe, n, int(acc_exp), a_y, stall_pct, seed & 0xFFFFFFFF)
        if cycles < 0:
            self._check(cycles)
        return y[:n].copy(), cycles

    def run_tiles(self, x_mant, x_exp, acc_exp, *, w_mant=None, w_exp=None, x_index=None, out=None,
                  stall_pct: int = 0, seed: int = 1) -> TileRuns:
        """Run N tiles in one call into the model: the same as, for each tile i in order,
        ``load_weights(w_mant[i], w_exp[i])`` (if weights are given) then
        ``run_tile(x_mant[x_index[i]], x_exp[x_index[i]], acc_exp[i], seed=seed + i)``.

        ``x_mant (M, T, rows)``, ``x_exp (M, T, n_blocks)``: M input tiles of T vectors.
        ``x_index (N,)``: the input tile of each tile run, in 0..M-1 (default: N = M, tile i
        runs input i), so several weight tiles can share one input tile without copies.
        ``acc_exp``: (N,) or one int for all. ``w_mant (N, rows, cols)``, ``w_exp
        (N, n_blocks, cols)``: tile i's weights; without them every tile runs on the
        weights loaded now. ``out``: an (N, T, cols) int64 C-contiguous array for the
        results (else one is allocated). On a hardware error (:class:`SimError`, naming
        the tile) the tiles before it have run.
        """
        # About 10 us of Python per call (each array's address costs 1-2 us), spread
        # over all its tiles; shapes are compared as whole tuples, the free axes
        # (M, T, N) taken from the arrays themselves.
        c = self.cfg
        x_mant = np.ascontiguousarray(x_mant, dtype=np.int32)
        m, t = x_mant.shape[:2] if x_mant.ndim == 3 else (-1, -1)
        _check_shape(x_mant, (m, t, c.rows), "x_mant", f"(M, T, {c.rows})")
        x_exp = _i32(x_exp, (m, t, c.n_blocks), "x_exp")
        if x_index is None:
            n = m
        else:
            x_index = np.ascontiguousarray(x_index, dtype=np.int32)
            n = len(x_index) if x_index.ndim == 1 else -1
            _check_shape(x_index, (n,), "x_index", "(N,)")
            if n and (x_index.min() < 0 or x_index.max() >= m):
                raise ValueError(f"x_index must be in 0..{m - 1} (x_mant holds {m} input tiles)")
        if n and t < 1:
            raise ValueError("a tile needs at least one vector (x_mant has T = 0)")
        if isinstance(acc_exp, (int, np.integer)):
            acc_exp = np.full(n, acc_exp, np.int32)
        acc_exp = _i32(acc_exp, (n,), "acc_exp")
        if (w_mant is None) != (w_exp is None):
            raise ValueError("give both w_mant and w_exp, or neither")
        if w_mant is not None:
            w_mant = _i32(w_mant, (n, c.rows, c.cols), "w_mant")
            w_exp = _i32(w_exp, (n, c.n_blocks, c.cols), "w_exp")
        if out is None:
            out = np.empty((n, t, c.cols), np.int64)
        elif out.shape != (n, t, c.cols) or out.dtype != np.int64 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous ({n}, {t}, {c.cols}) int64 array, "
                             f"got {out.dtype} {out.shape}")
        if not 0 <= stall_pct < 100:
            raise ValueError(f"stall_pct must be in 0..99, got {stall_pct}")
        counts = np.empty((2, n), np.int64)  # tile cycles, load cycles: one address for both
        tiles, loads = counts[0], (counts[1] if w_mant is not None else None)
        if n:
            addr = lambda a: None if a is None else a.ctypes.data  # noqa: E731
            a_counts = counts.ctypes.data
            rc = self._lib.bw_run_tiles(self._h, n, addr(w_mant), addr(w_exp), a_counts + 8 * n, x_mant.ctypes.data,
                                        x_exp.ctypes.data, addr(x_index), m, t, acc_exp.ctypes.data, out.ctypes.data,
                                        a_counts, stall_pct, seed & 0xFFFFFFFF)
            if rc < 0:
                i = int(np.argmax(tiles < 0))  # the tiles before it have all written their counts
                raise SimError(f"tile {i} of {n}: {_ERRORS.get(rc, f'error {rc}')}")
        return TileRuns(out, tiles, loads)

    # -- debugging ------------------------------------------------------------------
    def poke(self, name: str, value: int, index: int = 0) -> None:
        """Set an input port (array ports by index); takes effect at the next eval/tick."""
        if self._lib.bw_poke(self._h, name.encode(), index, value & (2**64 - 1)):
            raise KeyError(f"no port {name}[{index}]")

    def peek(self, name: str, index: int = 0) -> int:
        """Read a port's raw bits (unsigned)."""
        v = ctypes.c_uint64()
        if self._lib.bw_peek(self._h, name.encode(), index, ctypes.byref(v)):
            raise KeyError(f"no port {name}[{index}]")
        return v.value

    def eval(self) -> None:
        self._lib.bw_eval(self._h)

    def tick(self, n: int = 1) -> None:
        """Run ``n`` clock cycles with the inputs as poked."""
        self._lib.bw_tick(self._h, n)
