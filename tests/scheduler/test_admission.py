"""Admission control, expiry, cancellation, bounds and drain, on gated instances.

Service-time estimates are primed with ``record_compute`` at 100 s, so the only
clock that matters (the few ms a test takes) is far inside every margin.
"""
from __future__ import annotations

import asyncio
import re
import threading
import time

import grpc
import pytest

from serve.errors import DeadlineExpired, Overloaded, QueueFull, ShuttingDown, status_of
from tests.scheduler.gates import WAIT_S, Rig, tag

SERVICE = 100.0  # seconds, the primed estimate


async def _block(rig: Rig, index: int = 0):
    """Start a request with tag -1 on instance ``index`` of the first device and wait until it runs."""
    future = rig.scheduler.submit(tag(-1))
    await rig.started(rig.groups[0][index])
    return future


def test_refuses_a_request_predicted_to_miss_and_says_why(rig) -> None:
    rig.scheduler.record_compute(0, SERVICE)

    async def main():
        s = rig.scheduler
        blocker = await _block(rig)
        now = time.monotonic()
        # Busy instance: ~100 s left. Tag 0 would finish at ~200 s: inside the 225 s that
        # a 300 s deadline leaves after the response slack (25%).
        first = s.submit(tag(0), now + 3 * SERVICE)
        # Tag 1, same class: behind tag 0, ~300 s > 225 s: refused at once, never queued.
        with pytest.raises(Overloaded) as info:
            s.submit(tag(1), now + 3 * SERVICE)
        assert s.queue_depth == 1
        # Tag 2, a higher class: it would run before tag 0, so ~200 s: admitted.
        urgent = s.submit(tag(2), now + 3 * SERVICE, priority=1)
        rig.gate.set()
        return info.value, await asyncio.gather(blocker, first, urgent)

    refusal, results = asyncio.run(main())
    message = str(refusal)
    assert "1 queued ahead on gate, 100000.00 ms each" in message, message
    finish, allowed, budget = map(float, re.search(
        r"would finish in ([\d.]+) ms .* deadline allows ([\d.]+) ms, ([\d.]+) ms of it for queue and run",
        message).groups())
    assert budget < finish and allowed == pytest.approx(3e5, rel=1e-3) and budget == pytest.approx(0.75 * allowed)
    assert status_of(refusal) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rig.log == [-1, 2, 0]
    assert [int(r.outputs["tag"]) for r in results] == [-1, 0, 2]


def test_without_admission_control_nothing_is_refused_on_prediction() -> None:
    rig = Rig(admission_control=False)
    rig.scheduler.record_compute(0, SERVICE)
    try:
        async def main():
            blocker = await _block(rig)
            now = time.monotonic()
            futures = [rig.scheduler.submit(tag(i), now + 1.5 * SERVICE) for i in range(3)]
            rig.gate.set()
            return await asyncio.gather(blocker, *futures)

        results = asyncio.run(main())
    finally:
        rig.close()
    assert len(results) == 4 and rig.log == [-1, 0, 1, 2]


def test_a_request_whose_deadline_passes_in_the_queue_is_dropped_unrun(rig) -> None:
    async def main():
        s = rig.scheduler
        blocker = await _block(rig)
        deadline = time.monotonic() + 0.01
        doomed = s.submit(tag(0), deadline)
        kept = s.submit(tag(1))
        while time.monotonic() <= deadline:  # let the deadline pass while it waits
            await asyncio.sleep(0.01)
        rig.gate.set()
        return await asyncio.gather(blocker, doomed, kept, return_exceptions=True)

    _, doomed, kept = asyncio.run(main())
    assert isinstance(doomed, DeadlineExpired) and "in the queue; not run" in str(doomed)
    assert status_of(doomed) is grpc.StatusCode.DEADLINE_EXCEEDED
    assert int(kept.outputs["tag"]) == 1
    assert rig.log == [-1, 1]


def test_a_deadline_already_past_is_refused_at_submit(rig) -> None:
    async def main():
        with pytest.raises(DeadlineExpired):
            rig.scheduler.submit(tag(0), time.monotonic() - 1.0)

    asyncio.run(main())
    assert rig.scheduler.queue_depth == 0 and rig.log == []


def test_a_cancelled_request_leaves_the_queue_and_never_runs(rig) -> None:
    async def main():
        s = rig.scheduler
        blocker = await _block(rig)
        waiting = asyncio.create_task(s.run(tag(0)))  # the service's path: gRPC cancels this task
        kept = asyncio.create_task(s.run(tag(1)))
        await asyncio.sleep(0)
        assert s.queue_depth == 2
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert s.queue_depth == 1  # taken out, not merely skipped later
        # A bare future cancelled in the queue is skipped by the worker instead.
        skipped = s.submit(tag(2))
        skipped.cancel()
        rig.gate.set()
        return await asyncio.gather(blocker, kept)

    asyncio.run(main())
    assert rig.log == [-1, 1]


def test_the_queue_is_bounded() -> None:
    rig = Rig(max_queue_size=2)
    try:
        async def main():
            s = rig.scheduler
            blocker = await _block(rig)  # running, so not counted as queued
            queued = [s.submit(tag(i)) for i in range(2)]
            with pytest.raises(QueueFull) as info:
                s.submit(tag(2))
            rig.gate.set()
            return info.value, await asyncio.gather(blocker, *queued)

        refusal, results = asyncio.run(main())
    finally:
        rig.close()
    assert status_of(refusal) is grpc.StatusCode.UNAVAILABLE and "max_queue_size 2" in str(refusal)
    assert rig.log == [-1, 0, 1] and len(results) == 3


def test_close_drains_everything_queued_and_refuses_new_work(rig) -> None:
    async def main():
        s = rig.scheduler
        blocker = await _block(rig)
        queued = [s.submit(tag(i)) for i in range(3)]
        closing = threading.Thread(target=s.close, args=(WAIT_S,))
        closing.start()
        while not s._closing:  # close() has begun: the scheduler no longer accepts
            await asyncio.sleep(0.001)
        with pytest.raises(ShuttingDown):
            s.submit(tag(9))
        rig.gate.set()
        results = await asyncio.gather(blocker, *queued)
        await asyncio.to_thread(closing.join, WAIT_S)
        return results

    results = asyncio.run(main())
    assert [int(r.outputs["tag"]) for r in results] == [-1, 0, 1, 2]
    assert rig.log == [-1, 0, 1, 2]


def test_n_instances_run_at_once_without_waiting_for_a_batch() -> None:
    rig = Rig(instances=3)
    try:
        async def main():
            s = rig.scheduler
            futures = [s.submit(tag(i)) for i in range(3)]
            for backend in rig.groups[0]:  # every instance holds one request at the same time
                await rig.started(backend)
            assert s.busy == 3 and s.queue_depth == 0
            rig.gate.set()
            return await asyncio.gather(*futures)

        results = asyncio.run(main())
    finally:
        rig.close()
    assert sorted(r.instance for r in results) == [0, 1, 2]


def test_a_blocked_model_does_not_starve_another() -> None:
    stuck, free = Rig(), Rig()
    try:
        async def main():
            await _block(stuck)
            waiting = [stuck.scheduler.submit(tag(i)) for i in range(5)]
            free.gate.set()
            done = await asyncio.gather(*(free.scheduler.submit(tag(i)) for i in range(5)))
            assert all(not f.done() for f in waiting)
            stuck.gate.set()
            await asyncio.gather(*waiting)
            return done

        results = asyncio.run(main())
    finally:
        stuck.close()
        free.close()
    assert [int(r.outputs["tag"]) for r in results] == [0, 1, 2, 3, 4]
