"""Loaded models: which versions serve, loading and unloading them while serving.

Loading (reading the config, creating backend instances, warming them up) runs in
a worker thread, so the event loop keeps answering other models' requests. A
version that fails to load is recorded with its reason and never replaces one
that serves.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from backends import Backend, ModelSpec, get_backend
from serve.codec import Codec
from serve.config import MODEL_FILE, ModelConfig
from serve.errors import ModelNotFound, ModelNotReady
from serve.metrics import Metrics, ModelMetrics
from serve.repository import ModelRepository, check_name
from serve.scheduler import ModelScheduler
from serve.stats import ModelStats

log = logging.getLogger("bwserve")


@dataclass(slots=True)
class LoadedModel:
    """One version of one model, ready to serve."""

    name: str
    version: str
    config: ModelConfig
    codec: Codec
    scheduler: ModelScheduler
    device: str
    metrics: ModelMetrics
    stats: ModelStats = field(default_factory=ModelStats)


def warmup_inputs(spec: ModelSpec) -> dict[str, np.ndarray]:
    """Zeros of every input's shape (dynamic dimensions as 1); empty strings for string inputs."""
    inputs = {}
    for tensor in spec.inputs:
        shape = [d if d > 0 else 1 for d in tensor.shape]
        inputs[tensor.name] = np.full(shape, b"", dtype=object) if tensor.dtype == object \
            else np.zeros(shape, dtype=tensor.dtype)
    return inputs


def new_instance(config: ModelConfig, device: int, slot: int, model_path: Path,
                 times: list[float] | None = None) -> Backend:
    """Create, load and warm up one instance; warm-up times after the cold first run go to ``times``."""
    spec = config.spec()
    backend = get_backend(config.backends[device])(spec, slot)
    try:
        backend.load(model_path)
        sample = warmup_inputs(spec)
        for run in range(config.warmup_runs):
            started = time.perf_counter()
            backend.run(sample)
            if run and times is not None:  # the first run is cold: not a service time
                times.append(time.perf_counter() - started)
    except BaseException:
        backend.close()
        raise
    return backend


def build_model(repo: ModelRepository, name: str, version: int, metrics: Metrics) -> LoadedModel:
    """Create, load and warm up every instance of one model version. Blocking."""
    config = repo.read_config(name, version)
    model_path: Path = repo.version_dir(name, version) / MODEL_FILE
    devices: list[list] = []  # per device in config.backends, its instances
    warm: list[list[float]] = []  # per device, warm-up compute times: the first estimate
    try:
        for index in range(len(config.backends)):
            devices.append(instances := [])
            warm.append(times := [])
            for slot in range(config.instances):
                instances.append(new_instance(config, index, slot, model_path, times))
    except BaseException:
        for backend in (b for instances in devices for b in instances):
            backend.close()
        raise
    version_str = str(version)
    device = ",".join(instances[0].device for instances in devices)
    scheduler = ModelScheduler(name, devices, config.max_queue_size, config.admission_control,
                               spawn=lambda index, slot: new_instance(config, index, slot, model_path),
                               hang_timeout_s=config.hang_timeout_s)
    for index, times in enumerate(warm):
        for seconds in times:
            scheduler.record_compute(index, seconds)
    bound = ModelMetrics.bind(metrics, name, version_str, device)
    return LoadedModel(
        name=name, version=version_str, config=config,
        codec=Codec(config.inputs, config.outputs, name, version_str),
        scheduler=scheduler,
        device=device,
        metrics=bound,
        stats=ModelStats(bound),
    )


@dataclass(slots=True)
class VersionState:
    state: str  # READY, LOADING, UNAVAILABLE
    reason: str = ""


class ModelRegistry:
    def __init__(self, repo: ModelRepository, metrics: Metrics) -> None:
        self.repo = repo
        self.metrics = metrics
        self._versions: dict[str, dict[str, LoadedModel]] = {}
        self._latest: dict[str, LoadedModel] = {}
        self._states: dict[tuple[str, str], VersionState] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # -- hot path ---------------------------------------------------------

    def get(self, name: str, version: str = "") -> LoadedModel:
        """The model version to serve; the newest ready one when ``version`` is empty."""
        model = self._latest.get(name) if not version else self._versions.get(name, {}).get(version)
        if model is not None:
            return model
        state = self._states.get((name, version)) if version else None
        if state is not None and state.state != "READY":
            raise ModelNotReady(f"model '{name}' version {version} is {state.state}: {state.reason}")
        if name in self._versions and version:
            raise ModelNotFound(
                f"model '{name}' has no version {version}; loaded: {', '.join(self._versions[name])}")
        if not version:  # nothing of it serves yet: a load under way is worth a retry, a failed one says why
            for (known, v), state in self._states.items():
                if known == name and state.state == "LOADING":
                    raise ModelNotReady(f"model '{name}' is loading (version {v}); retry when it is ready")
            failed = [f"version {v} {state.reason}" for (known, v), state in self._states.items() if known == name]
            if failed:
                raise ModelNotFound(f"model '{name}' is not serving: {'; '.join(failed)}")
        raise ModelNotFound(f"unknown model '{name}'; loaded: {', '.join(sorted(self._latest)) or 'none'}")

    # -- management -------------------------------------------------------

    def loaded(self) -> list[LoadedModel]:
        return [m for versions in self._versions.values() for m in versions.values()]

    def index(self) -> list[tuple[str, str, str, str]]:
        """(name, version, state, reason) of every version on disk or in memory."""
        rows = {}
        for name in self.repo.models():
            for version in self.repo.versions(name):
                rows[(name, str(version))] = ("UNAVAILABLE", "not loaded")
        for key, state in self._states.items():
            rows[key] = (state.state, state.reason)
        return [(n, v, s, r) for (n, v), (s, r) in sorted(rows.items(), key=lambda kv: (kv[0][0], int(kv[0][1])))]

    async def load(self, name: str) -> list[str]:
        """Load every version of ``name`` on disk that is not loaded yet; unload vanished ones.

        Returns the versions newly loaded. Raises the first load error after the
        other versions were tried; versions already serving keep serving.
        """
        check_name(name)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            on_disk = [str(v) for v in self.repo.versions(name)]
            if not on_disk and name not in self._versions:
                raise ModelNotFound(f"no model '{name}' in the repository {self.repo.root}")
            current = self._versions.get(name, {})
            for version in [v for v in current if v not in on_disk]:
                await self._unload_version(name, version)
            loaded, first_error = [], None
            for version in on_disk:
                if version in self._versions.get(name, {}):
                    continue
                self._states[(name, version)] = VersionState("LOADING")
                started = time.perf_counter()
                try:
                    model = await asyncio.to_thread(build_model, self.repo, name, int(version), self.metrics)
                except Exception as exc:
                    self._states[(name, version)] = VersionState("UNAVAILABLE", f"load failed: {exc}")
                    self.metrics.loads.labels(name, "failure").inc()
                    log.error("model %s version %s failed to load: %s", name, version, exc)
                    first_error = first_error or exc
                    continue
                self.metrics.loads.labels(name, "success").inc()
                self.metrics.load_seconds.labels(name, version).set(time.perf_counter() - started)
                self._versions.setdefault(name, {})[version] = model
                self._states[(name, version)] = VersionState("READY")
                loaded.append(version)
                log.info("model %s version %s ready on %s", name, version, model.device)
            self._refresh(name)
            if first_error is not None:
                raise first_error
            return loaded

    async def unload(self, name: str) -> None:
        if name not in self._versions:
            raise ModelNotFound(f"model '{name}' is not loaded")
        async with self._locks.setdefault(name, asyncio.Lock()):
            for version in list(self._versions.get(name, {})):
                await self._unload_version(name, version)
            self._refresh(name)

    async def _unload_version(self, name: str, version: str) -> None:
        model = self._versions[name].pop(version)
        self._states.pop((name, version), None)
        self._refresh(name)  # stop routing new requests to it before draining
        await asyncio.to_thread(model.scheduler.close)

    async def close(self, timeout: float | None = None) -> None:
        """Drain and close every model (graceful shutdown)."""
        models = self.loaded()
        self._versions.clear()
        self._latest.clear()
        await asyncio.gather(*(asyncio.to_thread(m.scheduler.close, timeout) for m in models))

    def _refresh(self, name: str) -> None:
        versions = self._versions.get(name)
        if versions:
            self._latest[name] = versions[max(versions, key=int)]
        else:
            self._versions.pop(name, None)
            self._latest.pop(name, None)
