"""``FpgaBackend``: a model compiled for the simulated FPGA, served one request at a time.

Load compiles the model once (``compiler``), pins its weights, binds the program
(``runtime``) and computes its static cycle count (``cycles``); a request then only
runs the bound instruction chain. The compiled program is an artefact in the model's
version folder (``artifact``, written by ``serve deploy`` and ``serve compile``): a
load of the same model, options and compiler binds it without compiling.
``last_device_stats`` reports the modeled device latency and MAC utilisation.

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
from backends.fpga import artifact, isa, matunit, mvu
from backends.fpga.compiler import compile_for
from backends.fpga.cycles import ProgramCost, program_cost
from backends.fpga.options import parse_options
from backends.fpga.procs import DeviceProcs
from backends.fpga.runtime import Runtime
from backends.fpga.summary import summary


log = logging.getLogger("bwserve.fpga")


def _engines(opts) -> tuple[str, ...]:
    """The engines a model is compiled for: the one asked for, or both (auto)."""
    return (opts.engine,) if opts.engine != "auto" else ("systolic",) if opts.sim == "tile" else ("systolic", "mvu")


def _cost(program: isa.Program, cfg) -> ProgramCost:
    a = program.assignment
    return program_cost(cfg, program.body) if a is None else program_cost(cfg, program.body, a.placement, a.devices)


class FpgaBackend(Backend):
    device = "fpga"

    def load(self, model_path: Path) -> None:
        """Bind the compiled artefact in the model's version folder if it is this model's
        for these options and this compiler (``artifact``), else compile; a missing or
        unreadable artefact is logged, never a load failure."""
        model_path = Path(model_path)
        try:
            data = model_path.read_bytes()
            model = onnx.load_model_from_string(data)
        except Exception as exc:  # protobuf's decode errors are untyped
            raise ModelLoadFailed(f"cannot read {model_path.name}: {exc}") from exc
        opts = parse_options(dict(self.spec.options))
        self.artifact_key = artifact.key(data, dict(self.spec.layer_formats), opts, _engines(opts))
        try:
            compiled = artifact.read(model_path.parent, self.artifact_key)
        except artifact.Unreadable as exc:
            log.warning("%s: %s; compiling", self.spec.name, exc)
            compiled = None
        if compiled is None:
            log.info("%s: no compiled artefact %s in %s: compiling", self.spec.name, self.artifact_key,
                     model_path.parent)
            compiled = self._compile(model, opts)
        self._bind(compiled, opts)

    def load_model(self, model: onnx.ModelProto) -> None:
        """Compile and bind an in-memory model (``load`` reads one from a file, or its artefact)."""
        opts = parse_options(dict(self.spec.options))
        self.artifact_key = artifact.key(model.SerializeToString(), dict(self.spec.layer_formats), opts,
                                         _engines(opts))
        self._bind(self._compile(model, opts), opts)

    def compiled_files(self) -> dict[str, bytes]:
        """The compiled program, its pinned weights and cycle table as artefact files."""
        return artifact.files(self.compiled, self.artifact_key, summary(self.compiled))

    def _compile(self, model: onnx.ModelProto, opts) -> artifact.Compiled:
        try:
            compiled = compile_for(model, dict(self.spec.layer_formats), opts, _engines(opts))
        except (ModelLoadFailed, BackendUnavailable):
            raise
        except Exception as exc:  # a compiler bug or a malformed model: still a load failure
            raise ModelLoadFailed(f"fpga compiler: {type(exc).__name__}: {exc}") from exc
        fits = {name: (*c, _cost(*c)) for name, c in compiled.items() if not isinstance(c, ModelLoadFailed)}
        if not fits:
            raise ModelLoadFailed("; ".join(f"{name}: {why}" for name, why in compiled.items()))
        best = min(fits, key=lambda name: fits[name][2].cycles)
        return artifact.Compiled(best, *fits[best], {name: cost for name, (_, _, cost) in fits.items()},
                                 {name: str(why) for name, why in compiled.items() if name not in fits})

    def _bind(self, compiled: artifact.Compiled, opts) -> None:
        self.compiled = compiled
        self.candidates, self.engine_name = compiled.candidates, compiled.engine
        self.program, self.cfg, self.cost = compiled.program, compiled.cfg, compiled.cost
        alternatives = ", ".join([f"{name} {cost.cycles}" for name, cost in self.candidates.items()]
                                 + [f"{name} cannot take it" for name in compiled.refused])
        log.info("%s: %s %s, %d cycles a request (%s)", self.spec.name, self.engine_name, self.cfg.name(),
                 self.cost.cycles, alternatives)
        self.assignment = self.program.assignment
        if self.assignment is not None and self.assignment.devices > 1:
            log.info("%s: pinned over %d devices, %s; %d cycles on the links between them", self.spec.name,
                     self.assignment.devices, self.assignment.describe(), self.cost.link_cycles)
        self.engine = self._engine(opts.sim)
        self.runtime = (DeviceProcs(self.program, self.cfg, opts.device_addrs, opts.device_timeout_s)
                        if opts.device_procs else Runtime(self.program, self.cfg, self.engine))
        cost, clock = self.cost, self.cfg.clock_hz
        several = cost.devices > 1  # each device's time and the link's, per request
        self._stats = DeviceStats(cost.cycles, cost.seconds(self.cfg), cost.utilisation(self.cfg),
                                  tuple(c / clock for c in cost.device_cycles) if several else (),
                                  cost.link_cycles / clock if several else 0.0)
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
