"""The one interface every device backend implements.

A backend object is one *instance* of one model on one device: the scheduler
creates ``config.instances`` of them and hands each request to exactly one.
``run`` is called from a single thread at a time per instance, so a backend needs
no locking of its own.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Mapping

import numpy as np

if TYPE_CHECKING:
    from serve.config import ModelConfig


class BackendUnavailable(RuntimeError):
    """The backend cannot run on this machine (missing package, device or tool).

    The message says what is missing and how to get it; the server never falls back
    to another device silently.
    """


class ModelLoadFailed(RuntimeError):
    """The model file could not be loaded by this backend (corrupt, unsupported op...)."""


@dataclass(frozen=True, slots=True)
class DeviceStats:
    """What a device reports about one run besides its outputs (the FPGA's cycle model)."""

    cycles: int
    seconds: float  # modeled device time: cycles / clock
    mac_utilisation: float  # useful MACs / (engine MACs * cycles the device computes), 0..1


class Backend(ABC):
    """One model instance on one device."""

    device: ClassVar[str]  # metrics label: "cpu", "gpu", "fpga", "null"
    # May the scheduler run a short request on the event loop's own thread when the
    # model is idle (serve/scheduler.py, "inline")? Only for backends whose run is a
    # self-contained call that needs no other thread to finish.
    inline_safe: ClassVar[bool] = False

    def __init__(self, config: "ModelConfig", instance: int = 0) -> None:
        self.config = config
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
