"""Run order: earliest deadline first inside a priority class, classes first; FIFO when admission is off."""
from __future__ import annotations

import asyncio
import math
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.scheduler.gates import Rig, tag

FAR = 10_000.0  # seconds: deadlines no test ever reaches


async def _queue_then_release(rig: Rig, jobs: list[tuple[int, float, int]]) -> list:
    """Block the instance with tag -1, queue ``jobs`` (tag, deadline offset, priority), release."""
    s = rig.scheduler
    blocker = s.submit(tag(-1))
    await rig.started(rig.groups[0][0])
    now = time.monotonic()
    futures = [s.submit(tag(t), now + offset, priority) for t, offset, priority in jobs]
    assert s.queue_depth == len(jobs)
    rig.gate.set()
    return await asyncio.gather(blocker, *futures, return_exceptions=True)


def test_earliest_deadline_runs_first() -> None:
    rig = Rig()
    try:
        jobs = [(0, FAR + 30, 100), (1, FAR + 10, 100), (2, FAR + 20, 100), (3, math.inf, 100), (4, FAR, 100)]
        results = asyncio.run(_queue_then_release(rig, jobs))
    finally:
        rig.close()
    assert rig.log == [-1, 4, 1, 2, 0, 3]
    assert [int(r.outputs["tag"]) for r in results] == [-1, 0, 1, 2, 3, 4]


def test_priority_class_before_deadline_and_arrival_breaks_ties() -> None:
    rig = Rig()
    try:
        # 0: low class, earliest deadline; 1, 2: high class, same deadline (arrival decides); 3: middle.
        jobs = [(0, FAR, 200), (1, FAR + 50, 1), (2, FAR + 50, 1), (3, FAR + 90, 100)]
        asyncio.run(_queue_then_release(rig, jobs))
    finally:
        rig.close()
    assert rig.log == [-1, 1, 2, 3, 0]


def test_admission_off_is_plain_fifo() -> None:
    rig = Rig(admission_control=False)
    try:
        # Priorities and deadlines are ignored: even one already past runs, in arrival order.
        jobs = [(0, FAR + 30, 200), (1, -1.0, 1), (2, FAR, 100)]
        results = asyncio.run(_queue_then_release(rig, jobs))
    finally:
        rig.close()
    assert rig.log == [-1, 0, 1, 2]
    assert [int(r.outputs["tag"]) for r in results] == [-1, 0, 1, 2]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), min_size=1, max_size=12))
def test_any_mix_runs_in_priority_deadline_arrival_order(mix) -> None:
    rig = Rig()
    try:
        jobs = [(i, FAR + d, p) for i, (p, d) in enumerate(mix)]
        asyncio.run(_queue_then_release(rig, jobs))
    finally:
        rig.close()
    want = [i for i, _, _ in sorted(jobs, key=lambda j: (j[2], j[1], j[0]))]
    assert rig.log == [-1, *want]
