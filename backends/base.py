"""The one interface every device backend implements.

A backend object is one *instance* of one model on one device: the scheduler
creates ``spec.instances`` of them and hands each request to exactly one.
``run`` is called from a single thread at a time per instance, so a backend needs
no locking of its own.

A backend is told what to run by a ``ModelSpec``: what a device reads of a model's
configuration, in a device's terms (numpy dtypes, not the protocol's datatype names).
The server builds it (``serve.config.ModelConfig.spec``); nothing here knows the server.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Mapping

import numpy as np


class BackendUnavailable(RuntimeError):
    """The backend cannot run on this machine (missing package, device or tool).

    The message says what is missing and how to get it; the server never falls back
    to another device silently.
    """


class ModelLoadFailed(RuntimeError):
    """The model file could not be loaded by this backend (corrupt, unsupported op...)."""


class DeviceUnavailable(RuntimeError):
    """A device the model runs on is down for now (a device process died or hung).

    The message names the device and what happens next (it is being restarted): the
    request failed whole and the client may retry; serving recovers without a reload.
    """


@dataclass(frozen=True, slots=True)
class DeviceStats:
    """What a device reports about one run besides its outputs (the FPGA's cycle model)."""

    cycles: int
    seconds: float  # modeled device time: cycles / clock
    mac_utilisation: float  # useful MACs / (engine MACs * cycles the device computes), 0..1
    # A model over several devices: each device's modeled computing time and the time
    # some transfer between them is in flight (seconds); () and 0.0 on one device.
    per_device_seconds: tuple[float, ...] = ()
    link_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class TensorDesc:
    """One input or output of a model at batch 1, as a device sees it."""

    name: str
    dtype: np.dtype  # np.dtype(object) for strings
    shape: tuple[int, ...]  # -1 marks a dimension of any size


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What a backend needs to know of one model version; frozen, read-only mappings included."""

    name: str  # for log lines
    inputs: tuple[TensorDesc, ...] = ()
    outputs: tuple[TensorDesc, ...] = ()
    precision: str = "fp32"
    # Per-layer narrow formats chosen by the quantiser, {initializer name: format}.
    layer_formats: Mapping[str, str] = field(default_factory=dict)
    # Backend-specific settings (e.g. the FPGA's array size), strings; each backend checks its own.
    options: Mapping[str, str] = field(default_factory=dict)
    threads: int = 0  # intra-op threads per instance; 0 lets the backend choose
    instances: int = 1  # instances of the model on this device, which share its cores

    def __post_init__(self) -> None:
        # Read-only views, so that no instance can change what the others were given.
        object.__setattr__(self, "layer_formats", MappingProxyType(dict(self.layer_formats)))
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


class Backend(ABC):
    """One model instance on one device."""

    device: ClassVar[str]  # metrics label: "cpu", "gpu", "fpga", "null"
    # May the scheduler run a short request on the event loop's own thread when the
    # model is idle (serve/scheduler.py, "inline")? Only for backends whose run is a
    # self-contained call that needs no other thread to finish.
    inline_safe: ClassVar[bool] = False

    def __init__(self, spec: ModelSpec, instance: int = 0) -> None:
        self.spec = spec
        self.instance = instance

    @abstractmethod
    def load(self, model_path: Path) -> None:
        """Load (and compile) the model; raise ModelLoadFailed with a clear reason."""

    @abstractmethod
    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch-1 request; inputs were already validated against the signature."""

    def run_busy(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``run`` while other requests wait for this device (the scheduler's choice).

        A backend with a way to spend less CPU per request under steady load (the
        CPU backend: onnxruntime on one thread, so that the server's own threads keep
        a core) overrides it and sets ``busy_mode``. Default: ``run``.
        """
        return self.run(inputs)

    @property
    def busy_mode(self) -> bool:
        """Whether ``run_busy`` runs the model differently from ``run`` (its times are not ``run``'s)."""
        return False

    def close(self) -> None:
        """Release the device's resources. Default: nothing to release."""

    def cancel(self) -> None:
        """Make the run in progress stop soon, with an error, where the device can.

        Called from another thread by the hang watchdog (serve/scheduler.py) for a
        run past the model's hang timeout; the instance is retired afterwards and
        never runs again, so nothing needs resetting. Default: nothing, the run
        goes on to its end.
        """

    def last_device_stats(self) -> DeviceStats | None:
        """Device-side figures of the last ``run``; None where the device has none."""
        return None

    def compiled_files(self) -> dict[str, bytes]:
        """What ``load`` compiled, as files for the model's version folder ({path relative
        to it: bytes}), which a later ``load`` of the same model there reads instead of
        compiling again (``serve deploy`` and ``serve compile`` write them). Default:
        nothing, for a device with no compile stage.
        """
        return {}
