"""A backend whose runs wait on a gate, so tests decide when an instance is free.

Tests block every instance, queue requests behind it, then open the gate and
assert the order and the statuses: nothing here depends on the machine's speed.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Mapping

import numpy as np

from backends.base import Backend, ModelSpec
from serve.scheduler import ModelScheduler

WAIT_S = 30.0  # only ever reached when a test is broken; never a timing assumption


class GateBackend(Backend):
    """Runs a request by recording its tag, then waiting until the gate opens."""

    device = "gate"

    def __init__(self, log: list[int], gate: threading.Event, device: str = "gate", instance: int = 0) -> None:
        super().__init__(ModelSpec(name="gated"), instance)
        self.device = device  # per object: two gate devices can stand for cpu and fpga
        self.log = log  # shared by every instance: the global run order
        self.gate = gate
        self.started = threading.Semaphore(0)  # released once per run that began

    def load(self, model_path) -> None:
        pass

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.log.append(int(inputs["tag"]))
        self.started.release()
        if not self.gate.wait(WAIT_S):
            raise TimeoutError("gate never opened")
        return {"tag": inputs["tag"]}


class Rig:
    """A scheduler over gate backends, plus the handles a test needs."""

    def __init__(self, instances: int = 1, devices: tuple[str, ...] = ("gate",), max_queue_size: int = 64,
                 admission_control: bool = True) -> None:
        self.log: list[int] = []
        self.gate = threading.Event()
        self.groups = [[GateBackend(self.log, self.gate, d, i) for i in range(instances)] for d in devices]
        self.scheduler = ModelScheduler("gated", self.groups, max_queue_size, admission_control)

    def wait_started(self, backend: GateBackend) -> None:
        """Block until ``backend`` has begun one more run (its worker holds that request)."""
        assert backend.started.acquire(timeout=WAIT_S), "the instance never started the request"

    async def started(self, backend: GateBackend) -> None:
        await asyncio.to_thread(self.wait_started, backend)

    def close(self) -> None:
        self.gate.set()
        self.scheduler.close(WAIT_S)


def tag(i: int) -> dict[str, np.ndarray]:
    return {"tag": np.array(i)}
