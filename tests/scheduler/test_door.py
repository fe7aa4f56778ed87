"""The door (``ModelScheduler.admit``), the stage of each shed request, and runs under load.

Estimates are primed at 100 s as in test_admission.py, so no clock in the test
matters; the gate decides when an instance is free.
"""
from __future__ import annotations

import asyncio
import math
import time

import pytest

from serve.errors import DeadlineExpired, Overloaded
from tests.scheduler.gates import GateBackend, Rig, tag

SERVICE = 100.0  # seconds, the primed estimate


def test_the_door_sheds_an_expired_request_without_queueing_it(rig) -> None:
    with pytest.raises(DeadlineExpired) as info:
        rig.scheduler.admit(time.monotonic() - 1.0)
    assert info.value.stage == "door" and "already passed" in str(info.value)
    assert rig.scheduler.queue_depth == 0 and rig.log == []


def test_the_door_refuses_what_queueing_would_and_admits_the_rest(rig) -> None:
    s = rig.scheduler
    s.record_compute(0, SERVICE)

    async def main():
        blocker = s.submit(tag(-1))
        await rig.started(rig.groups[0][0])
        now = time.monotonic()
        # ~100 s left on the busy instance + 100 s of its own: 200 s > 75% of 150 s.
        with pytest.raises(Overloaded) as refused:
            s.admit(now + 1.5 * SERVICE)
        s.admit(now + 3 * SERVICE)  # 200 s within 225 s: the door lets it through
        s.admit(math.inf)  # no deadline: nothing to predict against
        rig.gate.set()
        await blocker
        return refused.value

    refused = asyncio.run(main())
    assert refused.stage == "door"
    assert "would finish in" in str(refused) and "deadline allows" in str(refused)
    assert s.queue_depth == 0 and rig.log == [-1]  # the door queues nothing


def test_without_admission_control_the_door_is_open() -> None:
    rig = Rig(admission_control=False)
    try:
        rig.scheduler.admit(time.monotonic() - 1.0)
    finally:
        rig.close()


def test_each_shed_request_says_its_stage(rig) -> None:
    s = rig.scheduler

    async def main():
        blocker = s.submit(tag(-1))
        await rig.started(rig.groups[0][0])
        deadline = time.monotonic() + 0.01
        doomed = s.submit(tag(0), deadline)
        while time.monotonic() <= deadline:  # it expires while it waits
            await asyncio.sleep(0.01)
        with pytest.raises(DeadlineExpired) as at_submit:
            s.submit(tag(1), time.monotonic() - 1.0)
        rig.gate.set()
        return at_submit.value, await asyncio.gather(blocker, doomed, return_exceptions=True)

    at_submit, (_, doomed) = asyncio.run(main())
    assert at_submit.stage == "scheduler"
    assert isinstance(doomed, DeadlineExpired) and doomed.stage == "expired"
    assert rig.log == [-1]  # neither ran


class BusyGate(GateBackend):
    """A gate backend that records which of run / run_busy the scheduler chose."""

    modes: list[str]

    def run(self, inputs):
        self.modes.append("run")
        return super().run(inputs)

    def run_busy(self, inputs):
        self.modes.append("busy")
        return super().run(inputs)

    @property
    def busy_mode(self) -> bool:
        return True


def test_runs_under_load_use_run_busy_until_the_load_has_passed(rig) -> None:
    backend = rig.groups[0][0]
    backend.__class__ = BusyGate
    backend.modes = []
    s = rig.scheduler
    device = s.pools[0]

    async def main():
        first = s.submit(tag(0))  # alone: run
        await rig.started(backend)
        second = s.submit(tag(1))  # tag 2 will wait behind it: under load, run_busy
        third = s.submit(tag(2))  # nothing behind it, but the load has not passed: run_busy
        rig.gate.set()
        await asyncio.gather(first, second, third)
        device.loaded_until = 0.0  # what LOAD_HOLD_S of quiet does
        await s.submit(tag(3))  # alone again: run

    asyncio.run(main())
    assert rig.log == [0, 1, 2, 3]
    assert backend.modes == ["run", "busy", "busy", "run"]
    # The inline decision reads ``run`` alone: the busy runs are not among its samples.
    assert device.run_time._count == 2 and device.estimator._count == 4
