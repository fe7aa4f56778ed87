"""A model's configuration: one dataclass in code, one JSON file on disk.

The file lives beside the model, ``<repo>/<model>/<version>/config.json``; each
version is self-contained so that a version directory is written and renamed into
place as a whole (see ``serve.repository``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.base import ModelSpec, TensorDesc
from serve.datatypes import NUMPY

CONFIG_FILE = "config.json"
MODEL_FILE = "model.onnx"


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output of a model's signature (batch 1: no batch dimension added)."""

    name: str
    datatype: str  # KServe v2 datatype name: "FP32", "INT64", "BYTES", ...
    shape: tuple[int, ...]  # -1 marks a dimension of any size

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def desc(self) -> TensorDesc:
        """The tensor in a device's terms: the datatype as its numpy dtype."""
        return TensorDesc(self.name, NUMPY[self.datatype], self.shape)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TensorSpec":
        return cls(str(data["name"]), str(data["datatype"]), tuple(int(d) for d in data["shape"]))


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Everything the server needs to know about one version of one model."""

    name: str
    backend: str = "cpu"  # the device; with `devices`, the first of them
    instances: int = 1
    precision: str = "fp32"
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    slo_ms: float | None = None  # deadline for requests whose client set none
    max_queue_size: int = 128  # requests waiting per model; beyond it UNAVAILABLE
    admission_control: bool = True  # reject at once what would miss its deadline
    warmup_runs: int = 3
    # A run longer than this is a hung instance: its request fails, the instance is replaced.
    hang_timeout_s: float | None = 60.0
    threads: int = 0  # intra-op threads per instance; 0 lets the backend choose
    # Per-layer narrow formats chosen by the quantiser, {initializer name: format}.
    layer_formats: dict[str, str] = field(default_factory=dict)
    # Backend-specific settings (e.g. the FPGA's array size), strings only.
    backend_options: dict[str, str] = field(default_factory=dict)
    # A model served on several devices (e.g. ("cpu", "fpga")): each gets `instances`
    # instances and a request goes where it is predicted to finish first. Empty: `backend` only.
    devices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("model name must not be empty")
        if self.instances < 1:
            raise ValueError(f"instances must be >= 1, got {self.instances}")
        if self.max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {self.max_queue_size}")
        if self.hang_timeout_s is not None and self.hang_timeout_s <= 0:
            raise ValueError(f"hang_timeout_s must be positive, got {self.hang_timeout_s}")
        if self.slo_ms is not None and self.slo_ms <= 0:
            raise ValueError(f"slo_ms must be positive, got {self.slo_ms}")
        if self.devices and (self.devices[0] != self.backend or len(set(self.devices)) != len(self.devices)):
            raise ValueError(f"devices {list(self.devices)} must be distinct and start with backend {self.backend!r}")

    @property
    def backends(self) -> tuple[str, ...]:
        """Every device the model is served on, `backend` first."""
        return self.devices or (self.backend,)

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def spec(self) -> ModelSpec:
        """What a backend instance of this version is given (``backends.base.ModelSpec``)."""
        return ModelSpec(name=self.name, inputs=tuple(t.desc() for t in self.inputs),
                         outputs=tuple(t.desc() for t in self.outputs), precision=self.precision,
                         layer_formats=self.layer_formats, options=self.backend_options, threads=self.threads,
                         instances=self.instances)

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["inputs"] = [t.to_json() for t in self.inputs]
        data["outputs"] = [t.to_json() for t in self.outputs]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        values = dict(data)
        values["inputs"] = tuple(TensorSpec.from_json(t) for t in data.get("inputs", ()))
        values["outputs"] = tuple(TensorSpec.from_json(t) for t in data.get("outputs", ()))
        values["devices"] = tuple(str(d) for d in data.get("devices", ()))
        return cls(**values)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> "ModelConfig":
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: invalid model config: {exc}") from exc
