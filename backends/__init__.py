"""Backend registry: a name maps to ``"module:Class"``, imported only when chosen.

An unknown name, or a backend whose module cannot be imported here, raises
``BackendUnavailable`` with the reason; nothing falls back to another device.
"""
from __future__ import annotations

import importlib

from backends.base import Backend, BackendUnavailable, DeviceStats, ModelLoadFailed, ModelSpec, TensorDesc

BACKENDS: dict[str, str] = {
    "cpu": "backends.cpu:CpuBackend",
    "gpu": "backends.gpu:GpuBackend",
    "fpga": "backends.fpga:FpgaBackend",
    "null": "backends.null:NullBackend",
}


def get_backend(name: str) -> type[Backend]:
    """Return the backend class registered as ``name``."""
    try:
        target = BACKENDS[name]
    except KeyError:
        raise BackendUnavailable(
            f"unknown backend {name!r}; expected one of {', '.join(sorted(BACKENDS))}"
        ) from None
    module_name, class_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(f"backend {name!r} cannot be imported: {exc}") from exc
    return getattr(module, class_name)


__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "DeviceStats", "ModelLoadFailed", "ModelSpec", "TensorDesc",
           "get_backend"]
