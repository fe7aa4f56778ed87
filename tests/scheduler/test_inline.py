"""The inline fast path: short runs on an idle model happen on the event loop's thread."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from backends.base import Backend, ModelSpec
from serve.errors import DeadlineExpired, Overloaded
from serve.scheduler import INLINE_MAX_S, ModelScheduler


class ThreadRecorder(Backend):
    """Records which thread ran each request; optionally holds the first run at a gate."""

    device = "cpu"
    inline_safe = True

    def __init__(self, gate: threading.Event | None = None) -> None:
        super().__init__(ModelSpec(name="m"), 0)
        self.threads: list[int] = []
        self.gate = gate

    def load(self, model_path) -> None:
        pass

    def run(self, inputs):
        self.threads.append(threading.get_ident())
        if self.gate is not None and len(self.threads) == 1:
            self.gate.wait(10)
        return {"y": np.asarray(inputs["x"]) + 1}


def _scheduler(backend: Backend, estimate_s: float) -> ModelScheduler:
    scheduler = ModelScheduler("m", [backend], max_queue_size=8)
    scheduler.record_compute(0, estimate_s)
    return scheduler


def _run(coro):
    return asyncio.run(coro)


def test_short_request_on_idle_model_runs_on_the_loop_thread() -> None:
    backend = ThreadRecorder()
    scheduler = _scheduler(backend, INLINE_MAX_S / 3)

    async def main():
        result = await scheduler.run({"x": np.zeros(2)})
        return result, threading.get_ident()

    result, loop_thread = _run(main())
    scheduler.close()
    assert backend.threads == [loop_thread]
    assert (result.outputs["y"] == 1).all()
    assert scheduler.busy == 0


def test_long_estimate_goes_to_the_worker_thread() -> None:
    backend = ThreadRecorder()
    scheduler = _scheduler(backend, INLINE_MAX_S * 3)

    async def main():
        await scheduler.run({"x": np.zeros(2)})
        return threading.get_ident()

    loop_thread = _run(main())
    scheduler.close()
    assert backend.threads and backend.threads[0] != loop_thread


def test_backend_not_inline_safe_always_uses_its_worker() -> None:
    backend = ThreadRecorder()
    backend.inline_safe = False
    scheduler = _scheduler(backend, INLINE_MAX_S / 3)

    async def main():
        await scheduler.run({"x": np.zeros(2)})
        return threading.get_ident()

    loop_thread = _run(main())
    scheduler.close()
    assert backend.threads[0] != loop_thread


def test_busy_instance_means_queueing_not_a_second_concurrent_run() -> None:
    """While a worker holds the only instance, a new request waits in the queue."""
    gate = threading.Event()
    backend = ThreadRecorder(gate)
    scheduler = ModelScheduler("m", [backend], max_queue_size=8)  # no estimate: first goes to the worker

    async def main():
        first = asyncio.ensure_future(scheduler.run({"x": np.zeros(2)}))
        while not backend.threads:
            await asyncio.sleep(0.001)
        scheduler.record_compute(0, INLINE_MAX_S / 3)  # now short enough to inline, but busy
        second = asyncio.ensure_future(scheduler.run({"x": np.ones(2)}))
        await asyncio.sleep(0.05)
        assert not second.done() and scheduler.queue_depth == 1
        gate.set()
        return await first, await second, threading.get_ident()

    first, second, loop_thread = _run(main())
    scheduler.close()
    assert (second.outputs["y"] == 2).all()
    assert loop_thread not in backend.threads  # both ran on the worker, one after the other


def test_inline_respects_admission_control() -> None:
    import math

    backend = ThreadRecorder()
    scheduler = _scheduler(backend, INLINE_MAX_S / 3)

    async def main():
        # Predicted to need more than the deadline allows: refused (or, on a slow machine,
        # already expired), and either way never run.
        with pytest.raises((Overloaded, DeadlineExpired)):
            await scheduler.run({"x": np.zeros(2)}, deadline=time.monotonic() + INLINE_MAX_S / 10)
        assert not backend.threads
        return await scheduler.run({"x": np.zeros(2)}, deadline=math.inf)

    assert (_run(main()).outputs["y"] == 1).all()
    scheduler.close()
    assert len(backend.threads) == 1


def _ran_on_loop(scheduler: ModelScheduler, backend: ThreadRecorder) -> bool:
    """Run one request on an idle model; whether it ran on the event loop's thread."""
    # A worker hands its result back before it marks itself idle: wait for that, so that
    # a previous request's worker still finishing up is not mistaken for a busy model.
    deadline = time.monotonic() + 10
    while scheduler.busy and time.monotonic() < deadline:
        time.sleep(0.001)
    assert scheduler.busy == 0

    async def main():
        await scheduler.run({"x": np.zeros(2)})
        return threading.get_ident()

    loop_thread = _run(main())
    return backend.threads[-1] == loop_thread


def test_decision_reads_the_run_not_the_turn_with_its_hand_offs() -> None:
    """A turn through a worker includes the thread hand-offs; a short run still comes back inline."""
    backend = ThreadRecorder()
    scheduler = _scheduler(backend, INLINE_MAX_S / 3)
    for _ in range(20):  # turns slowed by hand-offs on a busy machine: the admission estimate
        scheduler.pools[0].estimator.add(INLINE_MAX_S * 3)
    try:
        assert scheduler.pools[0].estimator.estimate > INLINE_MAX_S
        assert _ran_on_loop(scheduler, backend)
    finally:
        scheduler.close()


def test_decision_follows_the_median_run() -> None:
    backend = ThreadRecorder()
    scheduler = _scheduler(backend, INLINE_MAX_S / 3)
    try:
        for _ in range(20):
            scheduler.record_compute(0, INLINE_MAX_S * 3)
        assert not _ran_on_loop(scheduler, backend)
        for _ in range(40):
            scheduler.record_compute(0, INLINE_MAX_S / 3)
        assert _ran_on_loop(scheduler, backend)
    finally:
        scheduler.close()


def test_several_instances_run_on_their_workers_in_parallel() -> None:
    """Inline would run them one at a time on the loop: a multi-instance model never inlines."""
    backends = [ThreadRecorder(), ThreadRecorder()]
    scheduler = ModelScheduler("m", backends, max_queue_size=8)
    scheduler.record_compute(0, INLINE_MAX_S / 3)

    async def main():
        for _ in range(4):
            await scheduler.run({"x": np.zeros(2)})
        return threading.get_ident()

    try:
        loop_thread = _run(main())
    finally:
        scheduler.close()
    ran = [t for b in backends for t in b.threads]
    assert len(ran) == 4 and loop_thread not in ran


def test_nothing_runs_inline_while_the_device_is_under_load() -> None:
    backend = ThreadRecorder()
    scheduler = _scheduler(backend, INLINE_MAX_S / 3)
    device = scheduler.pools[0]

    async def main():
        device.loaded_until = time.monotonic() + 3600  # as a run with others queued behind it sets
        await scheduler.run({"x": np.zeros(2)})
        device.loaded_until = 0.0  # the load has passed
        await scheduler.run({"x": np.zeros(2)})
        return threading.get_ident()

    loop_thread = _run(main())
    scheduler.close()
    assert backend.threads[0] != loop_thread  # a worker ran it
    assert backend.threads[1] == loop_thread  # inline again


@pytest.mark.parametrize("late", ["expired", "predicted miss"])
def test_a_refusal_before_queueing_ends_inline_runs_for_the_hold(late: str) -> None:
    """A request refused at the door waited behind the loop: the next ones go to the worker, so that
    an overload that began on the inline path leaves it (each inline run blocks the loop, so nothing
    would ever queue and mark the load)."""
    backend = ThreadRecorder()
    scheduler = _scheduler(backend, INLINE_MAX_S / 3)
    device = scheduler.pools[0]

    async def main():
        await scheduler.run({"x": np.zeros(2)})  # inline: idle, short
        # Expired, or too little time left for even one run: refused before decode.
        deadline = time.monotonic() - 1.0 if late == "expired" else time.monotonic() + INLINE_MAX_S / 10
        with pytest.raises(DeadlineExpired if late == "expired" else Overloaded):
            scheduler.admit(deadline)
        await scheduler.run({"x": np.zeros(2)})  # within LOAD_HOLD_S of the refusal
        device.loaded_until = 0.0  # the hold has passed
        await scheduler.run({"x": np.zeros(2)})
        return threading.get_ident()

    loop_thread = _run(main())
    scheduler.close()
    assert backend.threads[0] == loop_thread
    assert backend.threads[1] != loop_thread  # a worker ran it: the refusal held the load
    assert backend.threads[2] == loop_thread  # inline again


def test_a_refused_inline_claim_holds_the_load() -> None:
    """The inline claim's own refusal (too little time left on an idle device) is the same signal."""
    backend = ThreadRecorder()
    scheduler = _scheduler(backend, INLINE_MAX_S / 3)

    async def main():
        with pytest.raises(Overloaded):
            await scheduler.run({"x": np.zeros(2)}, deadline=time.monotonic() + INLINE_MAX_S / 10)
        await scheduler.run({"x": np.zeros(2)})
        return threading.get_ident()

    loop_thread = _run(main())
    scheduler.close()
    assert backend.threads and backend.threads[0] != loop_thread
