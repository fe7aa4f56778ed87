"""``FpgaBackend``: a model compiled for the simulated FPGA, served one request at a time.

Load compiles the model once (``compiler``), pins its weights, binds the program
(``runtime``) and computes its static cycle count (``cycles``); a request then only
runs the bound instruction chain. ``last_device_stats`` reports the modeled device
latency and MAC utilisation.

The matrix engine is the systolic array or the matrix-vector unit (fpga option
``engine``); with ``engine=auto`` (the default) the model is pinned for both and
served on the one whose modeled latency is lower (``self.engine_name`` says which,
and ``self.candidates`` both figures). The MVU's matrices may be pinned over several
devices (option ``devices``): ``self.assignment`` says which device holds what, and
``self.cost`` has each device's cycles and the links'. With ``device_procs`` or
``device_addrs`` each device is a process of its own (``backends.fpga.procs``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx

from hw.config import MvuConfig

from backends.base import Backend, BackendUnavailable, DeviceStats, ModelLoadFailed
from backends.fpga import isa, matunit, mvu
from backends.fpga.compiler import compile_for
from backends.fpga.cycles import ProgramCost, program_cost
from backends.fpga.options import parse_options
from backends.fpga.procs import DeviceProcs
from backends.fpga.runtime import Runtime


log = logging.getLogger("bwserve.fpga")


def _cost(program: isa.Program, cfg) -> ProgramCost:
    a = program.assignment
    return program_cost(cfg, program.body) if a is None else program_cost(cfg, program.body, a.placement, a.devices)


class FpgaBackend(Backend):
    device = "fpga"

    def load(self, model_path: Path) -> None:
        try:
            model = onnx.load(str(model_path))
        except Exception as exc:  # protobuf's decode errors are untyped
            raise ModelLoadFailed(f"cannot read {Path(model_path).name}: {exc}") from exc
        self.load_model(model)

    def load_model(self, model: onnx.ModelProto) -> None:
        """Compile and bind an in-memory model (``load`` reads one from a file)."""
        opts = parse_options(dict(self.spec.options))
        engines = (opts.engine,) if opts.engine != "auto" else ("systolic",) if opts.sim == "tile" \
            else ("systolic", "mvu")
        try:
            compiled = compile_for(model, dict(self.spec.layer_formats), opts, engines)
        except (ModelLoadFailed, BackendUnavailable):
            raise
        except Exception as exc:  # a compiler bug or a malformed model: still a load failure
            raise ModelLoadFailed(f"fpga compiler: {type(exc).__name__}: {exc}") from exc
        fits = {name: (*c, _cost(*c)) for name, c in compiled.items() if not isinstance(c, ModelLoadFailed)}
        if not fits:
            raise ModelLoadFailed("; ".join(f"{name}: {why}" for name, why in compiled.items()))
        self.candidates = {name: cost for name, (_, _, cost) in fits.items()}
        self.engine_name = min(fits, key=lambda name: fits[name][2].cycles)
        self.program, self.cfg, self.cost = fits[self.engine_name]
        alternatives = ", ".join(f"{name} {fits[name][2].cycles}" if name in fits else f"{name} cannot take it"
                                 for name in compiled)
        log.info("%s: %s %s, %d cycles a request (%s)", self.spec.name, self.engine_name, self.cfg.name(),
                 self.cost.cycles, alternatives)
        self.assignment = self.program.assignment
        if self.assignment is not None and self.assignment.devices > 1:
            log.info("%s: pinned over %d devices, %s; %d cycles on the links between them", self.spec.name,
                     self.assignment.devices, self.assignment.describe(), self.cost.link_cycles)
        self.engine = self._engine(opts.sim)
        self.runtime = DeviceProcs(self.program, self.cfg, opts.device_addrs) if opts.device_procs \
            else Runtime(self.program, self.cfg, self.engine)
        self._stats = DeviceStats(self.cost.cycles, self.cost.seconds(self.cfg), self.cost.utilisation(self.cfg))
        self._last: DeviceStats | None = None

    def _engine(self, sim: str):
        is_mvu = isinstance(self.cfg, MvuConfig)
        if sim == "golden":
            return mvu.golden_products if is_mvu else matunit.golden_tiles
        if sim == "tile":
            if is_mvu:
                raise ModelLoadFailed("fpga_sim=tile runs the systolic array's tiles one by one; "
                                      "the matrix-vector unit has golden and rtl")
            return matunit.tile_by_tile
        if self.assignment is not None and len(set(self.assignment.homes)) > 1:
            raise ModelLoadFailed(f"fpga_sim=rtl simulates one device; this model's weights are pinned over "
                                  f"{len(set(self.assignment.homes))} (fpga_sim=golden runs them)")
        try:
            if is_mvu:
                pinned = [p.tiles for p in self.program.prologue if isinstance(p, isa.PinWeights)]
                return mvu.RtlMvuEngine(self.cfg, pinned)
            return matunit.RtlEngine(self.cfg)
        except ImportError as exc:
            raise BackendUnavailable(f"fpga_sim=rtl needs the Verilator harness (hw.sim): {exc}") from exc
        except Exception as exc:  # the build reports missing tools with its own errors
            raise BackendUnavailable(f"fpga_sim=rtl: cannot build or load the Verilated array: {exc}") from exc

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.runtime.run(inputs)
        self._last = self._stats
        return out

    def last_device_stats(self) -> DeviceStats | None:
        return self._last

    def cancel(self) -> None:
        if isinstance(self.runtime, DeviceProcs):  # the in-process runtime runs to its end
            self.runtime.cancel()

    def close(self) -> None:
        if isinstance(self.engine, (matunit.RtlEngine, mvu.RtlMvuEngine)):
            self.engine.close()
        if isinstance(self.runtime, DeviceProcs):
            self.runtime.close()
        self.runtime = None
