"""The Verilated tile model through its C ABI (``hw/csrc/harness.cpp``), via ctypes.

    sim = TileSim(cfg)                     # builds or reuses the cached model
    sim.load_weights(w_mant, w_exp)        # -> cycles
    acc, cycles = sim.run_tile(x_mant, x_exp, acc_exp)
    sim.reset(); sim.poke("x_valid", 1); sim.tick(); sim.peek("x_ready")

Operands are shaped as in :mod:`hw.golden`; ``acc`` is (T, cols) int64, bit-exact
with ``golden.tile_matmul(...).acc``.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from hw import build
from hw.config import HwConfig

__all__ = ["TileSim", "SimError", "load_library"]

_ABI_VERSION = 1
_ERRORS = {-1: "timed out (the tile never finished)", -2: "protocol error", -3: "busy: the array is running a tile"}
_I32P = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
_libs: dict[Path, ctypes.CDLL] = {}


class SimError(RuntimeError):
    """The simulated hardware reported an error (timeout, protocol, busy)."""


def load_library(cfg: HwConfig) -> ctypes.CDLL:
    """Build or find the model for ``cfg``, load it once per process, check its parameters."""
    path = build.build_model(cfg)
    if path in _libs:
        return _libs[path]
    lib = ctypes.CDLL(str(path))
    lib.bw_abi_version.restype = ctypes.c_int
    if lib.bw_abi_version() != _ABI_VERSION:
        raise SimError(f"{path}: ABI version {lib.bw_abi_version()}, expected {_ABI_VERSION}")
    params = (ctypes.c_int32 * 7)()
    lib.bw_params(params)
    if list(params) != list(cfg.verilog_params().values()):
        raise SimError(f"{path} was built for {list(params)}, not {cfg.verilog_params()}")
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
    lib.bw_poke.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, ctypes.c_uint64]
    lib.bw_peek.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, ctypes.POINTER(ctypes.c_uint64)]
    lib.bw_eval.argtypes = [ctypes.c_void_p]
    lib.bw_tick.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    _libs[path] = lib
    return lib


def _check_shape(a: np.ndarray, shape) -> None:
    if a.shape != shape:
        raise ValueError(f"operand has shape {a.shape}, expected {shape}")


def _i32(a, shape) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.int32)
    _check_shape(a, shape)
    return a


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
