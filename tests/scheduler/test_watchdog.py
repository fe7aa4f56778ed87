"""A hung backend instance is retired and replaced; its request fails; the others keep serving."""
from __future__ import annotations

import asyncio
import threading
from typing import Mapping

import numpy as np
import pytest

from backends.base import Backend, ModelSpec
from serve.errors import InstanceHung
from serve.scheduler import ModelScheduler

HANG_TIMEOUT_S = 0.3  # the limit under test; no assertion below depends on the machine's speed


class MaybeHang(Backend):
    """Hangs (until ``release``) on an input of -1; otherwise returns x + 1."""

    device = "cpu"

    def __init__(self, release: threading.Event, instance: int = 0) -> None:
        super().__init__(ModelSpec(name="m"), instance)
        self.release = release
        self.closed = False

    def load(self, model_path) -> None:
        pass

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = np.asarray(inputs["x"])
        if x[0] == -1:
            self.release.wait(30)
        return {"y": x + 1}

    def close(self) -> None:
        self.closed = True


def test_hung_instance_is_replaced_and_its_request_fails() -> None:
    release = threading.Event()
    spawned: list[MaybeHang] = []

    def spawn(device: int, slot: int) -> MaybeHang:
        backend = MaybeHang(release, slot)
        spawned.append(backend)
        return backend

    originals = [MaybeHang(release, 0), MaybeHang(release, 1)]
    scheduler = ModelScheduler("m", originals, max_queue_size=16, spawn=spawn, hang_timeout_s=HANG_TIMEOUT_S)

    async def main():
        hung = asyncio.ensure_future(scheduler.run({"x": np.array([-1.0])}))
        # While one instance hangs, the other serves.
        served = [await scheduler.run({"x": np.array([float(i)])}) for i in range(5)]
        with pytest.raises(InstanceHung, match="over the 0.3 s limit"):
            await asyncio.wait_for(hung, 30)
        while not spawned or scheduler.busy:  # the replacement is being loaded
            await asyncio.sleep(0.01)
        # Both slots serve again; enough requests at once to need both instances.
        after = await asyncio.gather(*(scheduler.run({"x": np.array([float(i)])}) for i in range(8)))
        return served, after

    served, after = asyncio.run(main())
    assert [float(r.outputs["y"][0]) for r in served] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert [float(r.outputs["y"][0]) for r in after] == [float(i + 1) for i in range(8)]
    assert len(spawned) == 1 and spawned[0] in scheduler.instances
    hung_backend = next(b for b in originals if b not in scheduler.instances)
    assert not hung_backend.closed
    release.set()  # the hung run returns at last: its thread exits and closes its backend
    for _ in range(300):
        if hung_backend.closed:
            break
        threading.Event().wait(0.01)
    assert hung_backend.closed
    assert scheduler.close(timeout=10)


def test_without_a_hang_nothing_is_replaced() -> None:
    release = threading.Event()
    spawned = []
    scheduler = ModelScheduler("m", [MaybeHang(release)], max_queue_size=4,
                               spawn=lambda d, s: spawned.append(1) or MaybeHang(release), hang_timeout_s=5.0)

    async def main():
        return [await scheduler.run({"x": np.array([1.0])}) for _ in range(20)]

    assert all(float(r.outputs["y"][0]) == 2.0 for r in asyncio.run(main()))
    assert spawned == []
    assert scheduler.close(timeout=10)
