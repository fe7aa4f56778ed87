"""grpc.health.v1 statuses that follow model readiness (what Kubernetes and Envoy probe).

Service names and what SERVING means for each:

- ``"inference.GRPCInferenceService"``: the gRPC server takes RPCs. Liveness: true as
  soon as the port is bound, while models may still be loading or compiling.
- ``""`` (overall): the server takes RPCs *and* every required model has a READY
  version. Readiness: a replica joins a load balancer only once it can answer for the
  model it was started for. Required models are the ones named at start (``--model`` /
  ``--model-name``), or every model the repository held at start.
- ``"<model name>"``: that model has a READY version (it follows later loads and
  unloads), for a balancer that health-checks one model of a multi-model replica.

From the moment a graceful shutdown begins every name reports NOT_SERVING, before the
server stops taking RPCs, so balancers drop the replica while it drains.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Iterable

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from serve.registry import ModelRegistry

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
LIVENESS_SERVICE = "inference.GRPCInferenceService"


class ModelHealth:
    """Keeps a ``HealthServicer`` in step with the registry."""

    def __init__(self, registry: ModelRegistry, poll_s: float = 0.25) -> None:
        self.registry = registry
        self.servicer = HealthServicer()  # starts with "" SERVING: corrected in begin()
        self.required: tuple[str, ...] = ()
        self._poll_s = poll_s
        self._accepting = False
        self._task: asyncio.Task | None = None
        self._status: dict[str, int] = {}  # what we last set, per name

    async def begin(self, required: Iterable[str]) -> None:
        """Before the port opens: nothing is ready yet."""
        self.required = tuple(required)
        for name in ("", LIVENESS_SERVICE, *self.required):
            await self._set(name, NOT_SERVING, force=True)

    async def accepting(self) -> None:
        """The port is open: alive, though models may still be loading."""
        self._accepting = True
        await self._set(LIVENESS_SERVICE, SERVING)

    async def follow(self) -> None:
        """Models are loaded: publish their state now and keep following it.

        The registry has no change hook, and loads/unloads arrive over gRPC at any
        time, so a cheap in-memory poll (a set of names) keeps the statuses current.
        """
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def refresh(self) -> None:
        ready = {model.name for model in self.registry.loaded()}
        known = set(self._status) - {"", LIVENESS_SERVICE}
        for name in ready | known | set(self.required):
            await self._set(name, SERVING if name in ready else NOT_SERVING)
        overall = self._accepting and all(name in ready for name in self.required)
        await self._set("", SERVING if overall else NOT_SERVING)

    async def shutdown(self) -> None:
        """Every name NOT_SERVING, permanently (grpc's graceful-shutdown semantics)."""
        self._accepting = False
        await self.servicer.enter_graceful_shutdown()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _set(self, name: str, status: int, force: bool = False) -> None:
        # Only on change: every set wakes the Watch streams of that name.
        if force or self._status.get(name) != status:
            self._status[name] = status
            await self.servicer.set(name, status)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            await self.refresh()
