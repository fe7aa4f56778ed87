"""The same RTL clocked from Python with pyverilator-mm: for cycle-level tests and traces.

About 30x slower per tile than :mod:`hw.sim` (every signal access crosses into C),
but every cycle is visible: poke inputs, peek outputs, tick, and optionally write a
VCD trace. The top module is ``bfp_tile_pv`` (bfp_tile with packed ports).

pyverilator runs the ``verilator`` on ``PATH`` (Debian's package); it is cached like
the C-ABI model, by the same content hash plus pyverilator's own version.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
from pathlib import Path

import numpy as np

from hw import build
from hw.config import HwConfig
from hw.toolchain import ToolMissing, find_cxx, find_verilator

__all__ = ["PyTile", "build_pyverilator"]

TOP = "bfp_tile_pv"


def _pyverilator():
    try:
        import pyverilator
    except ImportError as e:
        raise ToolMissing("pyverilator-mm is not installed: `pip install pyverilator-mm`") from e
    return pyverilator


def build_pyverilator(cfg: HwConfig) -> Path:
    """Build (or find in the cache) the pyverilator model for ``cfg``; return the .so path."""
    pv = _pyverilator()
    tool = find_verilator()
    if tool.origin != "path":
        raise ToolMissing("pyverilator runs `verilator` from PATH: install Debian's `verilator` package")
    key = build._digest({
        "kind": "pyverilator", "pv": importlib.metadata.version("pyverilator-mm"),
        "params": cfg.verilog_params(), "rtl": build._file_hashes(build.rtl_sources()),
        "verilator": tool.version, "cxx": find_cxx()[1],
    })

    # pyverilator's make compiles Verilator's runtime into every build; its objects do
    # not depend on the design, so they are cached once and copied in (newer than
    # their sources, make skips them).
    rt_key = build._digest({"pv": importlib.metadata.version("pyverilator-mm"), "v": tool.version,
                            "cxx": find_cxx()[1]})
    rt_dir = build.cache_root() / f"pyvrt-{rt_key}"

    def make(tmp: Path) -> None:
        args = ["-Wall", *build.verilator_param_args(cfg), "--top-module", TOP]
        pv.PyVerilator.build(str(build.RTL_DIR / f"{TOP}.sv"), verilog_path=[str(build.RTL_DIR)],
                             build_dir=str(tmp), args=args, quiet=True, gen_only=True)
        for obj in rt_dir.glob("verilated*.o"):
            shutil.copy(obj, tmp / obj.name)
        build._run(["make", "-C", tmp, "-j", str(os.cpu_count() or 1), "-f", f"V{TOP}.mk",
                    "LDFLAGS=-fPIC -shared"])
        build.cached_build("pyvrt", rt_key, lambda d: [shutil.copy(o, d / o.name) for o in tmp.glob("verilated*.o")])

    return build.cached_build(f"pyv-{cfg.name()}", key, make) / f"V{TOP}"


def _pack(values, width: int) -> int:
    out = 0
    for i, v in enumerate(np.asarray(values).ravel().tolist()):
        out |= (int(v) & ((1 << width) - 1)) << (i * width)
    return out


def _unpack(word: int, width: int, count: int) -> list[int]:
    mask, sign = (1 << width) - 1, 1 << (width - 1)
    return [((word >> (i * width) & mask) ^ sign) - sign for i in range(count)]


class PyTile:
    """A pyverilator instance of the tile, with the handshakes driven from Python."""

    def __init__(self, cfg: HwConfig, vcd: str | Path | None = None):
        self.cfg = cfg
        self.sim = _pyverilator().PyVerilator(str(build_pyverilator(cfg)))
        self.cycles = 0
        if vcd is not None:
            self.sim.start_vcd_trace(str(vcd))
        self.reset()

    def close(self) -> None:
        if self.sim.vcd_trace is not None:
            self.sim.stop_vcd_trace()

    # -- signals --------------------------------------------------------------------
    def poke(self, name: str, value: int) -> None:
        self.sim.io[name] = int(value)

    def peek(self, name: str) -> int:
        return int(self.sim.io[name])

    def tick(self, n: int = 1) -> None:
        """``n`` rising edges (inputs as poked)."""
        for _ in range(n):
            self.sim.io.clk = 1
            self.sim.io.clk = 0
            self.cycles += 1

    def reset(self) -> None:
        """Two cycles of rst with the inputs idle."""
        for name in ("start", "w_valid", "x_valid", "x_last"):
            self.poke(name, 0)
        self.poke("y_ready", 1)
        self.poke("rst", 1)
        self.tick(2)
        self.poke("rst", 0)

    # -- whole operations -------------------------------------------------------------
    def load_weights(self, w_mant, w_exp) -> int:
        c = self.cfg
        w_mant, w_exp = np.asarray(w_mant), np.asarray(w_exp)
        c0 = self.cycles
        for r in range(c.rows):
            self.poke("w_mant", _pack(w_mant[r], c.mant_bits))
            self.poke("w_exp", _pack(w_exp[r // c.block], c.exp_bits))
            self.poke("w_valid", 1)
            assert self.peek("w_ready"), "weights offered while the array is busy"
            self.tick()
        self.poke("w_valid", 0)
        return self.cycles - c0

    def start(self, acc_exp: int) -> None:
        """Offer ``start`` for one cycle (the caller checks ``busy``)."""
        self.poke("acc_exp", acc_exp & ((1 << self.cfg.acc_exp_bits) - 1))
        self.poke("start", 1)
        self.tick()
        self.poke("start", 0)

    def stream(self, x_mant, x_exp, rng: np.random.Generator | None = None, p_stall: float = 0.0,
               max_cycles: int | None = None, n_results: int | None = None) -> tuple[np.ndarray, bool]:
        """Drive the vectors in and collect results until ``done`` (or ``max_cycles``).

        With ``rng``, each cycle drops x_valid and y_ready with probability ``p_stall``.
        Returns ``(acc rows collected, done seen)``; checks that y_last comes with
        result ``n_results`` (default: as many as vectors sent now).
        """
        c = self.cfg
        x_mant, x_exp = np.asarray(x_mant), np.asarray(x_exp)
        n, sent, out = len(x_mant), 0, []
        n_results = n if n_results is None else n_results
        budget = max_cycles if max_cycles is not None else 64 * (n + c.rows + c.cols + 8) * 10
        for _ in range(budget):
            xv = sent < n and not (rng is not None and rng.random() < p_stall)
            self.poke("x_valid", xv)
            if xv:
                self.poke("x_mant", _pack(x_mant[sent], c.mant_bits))
                self.poke("x_exp", _pack(x_exp[sent], c.exp_bits))
                self.poke("x_last", sent == n - 1)
            self.poke("y_ready", not (rng is not None and rng.random() < p_stall))
            x_fire = xv and self.peek("x_ready")
            if self.peek("y_valid") and self.peek("y_ready"):
                assert self.peek("y_last") == (len(out) == n_results - 1), f"y_last wrong on result {len(out)}"
                out.append(_unpack(self.peek("y_acc"), c.acc_bits, c.cols))
            self.tick()
            sent += bool(x_fire)
            if self.peek("done"):
                self.poke("x_valid", 0)
                return np.array(out, dtype=np.int64).reshape(-1, c.cols), True
        self.poke("x_valid", 0)
        return np.array(out, dtype=np.int64).reshape(-1, c.cols), False

    def run_tile(self, x_mant, x_exp, acc_exp: int, rng=None, p_stall: float = 0.0) -> tuple[np.ndarray, int]:
        """One tile, start to done: ``(acc (T, cols), cycles)`` like :meth:`hw.sim.TileSim.run_tile`."""
        assert not self.peek("busy"), "start offered while busy"
        c0 = self.cycles
        self.start(acc_exp)
        acc, done = self.stream(x_mant, x_exp, rng, p_stall)
        assert done, "tile did not finish"
        return acc, self.cycles - c0
