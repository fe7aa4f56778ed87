"""A model's instances on one device, their state and every change to it; the requests they run.

``InstancePool`` is one device's instances of one model version: their queue,
which of them run what, and their service-time estimates. The scheduler
(serve/scheduler.py) decides and the watchdog (serve/watchdog.py) retires, but
every change of a pool's state is one of its methods here, called under the
model's scheduler lock (the pool's ``cv`` is built on it). ``Job`` is one queued
request, ``Result`` what a run hands back, ``deliver`` the only way a result
crosses from a worker thread to the event loop.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from backends.base import Backend, DeviceStats
from serve.admission import ServiceTimeEstimator, predict_finish
from serve.jobqueue import JobQueue, Key


@dataclass(slots=True)
class Result:
    """What a worker hands back for one request."""

    outputs: dict[str, np.ndarray]
    queue_ns: int  # from submit to the worker picking it up
    compute_ns: int  # backend.run
    instance: int
    device_stats: DeviceStats | None
    device: str = ""  # name of the pool's device that ran it


@dataclass(slots=True)
class Job:
    key: Key  # its place in its pool's queue; unique (see serve.jobqueue)
    deadline: float  # time.monotonic() seconds; math.inf when none or admission is off
    inputs: Mapping[str, np.ndarray]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    submitted_ns: int
    pool: "InstancePool"


# What ``InstancePool.current`` holds for an instance running a request inline, on
# the event loop's own thread (serve/scheduler.py): the watchdog sees the run, and
# the loop thread fails the request itself once the run stops.
INLINE = object()


class InstancePool:
    """One device's instances of a model: their queue, their state, their estimates.

    Every field is read, and every method called, under the scheduler's lock.
    """

    __slots__ = ("name", "instances", "queue", "estimator", "run_time", "cv", "busy", "started", "current",
                 "generation", "loaded_until", "load_hold_s", "shedding_until", "shed_hold_s", "taken",
                 "intake_waiters", "backlog_since", "backlog_last")

    def __init__(self, name: str, instances: Sequence[Backend], lock: threading.Lock, load_hold_s: float,
                 shed_hold_s: float) -> None:
        self.name = name  # the device's
        self.instances = list(instances)
        self.queue: JobQueue[Job] = JobQueue()
        self.estimator = ServiceTimeEstimator()  # an instance's whole turn: what admission predicts with
        self.run_time = ServiceTimeEstimator(quantile=0.5)  # the median backend.run alone: what inlining asks
        self.cv = threading.Condition(lock)  # one lock per model, one condition per pool
        self.busy = 0  # instances running a request now
        self.started = [0.0] * len(self.instances)  # monotonic start of each instance's run; 0 idle
        self.current: list[Job | object | None] = [None] * len(self.instances)  # the job each runs, or INLINE
        self.generation = [0] * len(self.instances)  # bumped when the watchdog retires an instance
        # Monotonic time until which the pool counts as under load: set for ``load_hold_s``
        # whenever a run starts with others queued behind it, or a request is refused for its
        # deadline (serve/scheduler.py, LOAD_HOLD_S).
        self.loaded_until = 0.0
        self.load_hold_s = load_hold_s
        # Monotonic time until which the pool is shedding: set for ``shed_hold_s`` whenever a
        # request is refused because it could not make its deadline, or waited long before the
        # door (serve/scheduler.py, "Intake hold", BACKLOG_TURNS). While it lasts the event loop
        # waits on ``taken`` (``intake_waiters`` of it) whenever every instance has a job waiting,
        # and ``take`` wakes it.
        self.shedding_until = 0.0
        self.shed_hold_s = shed_hold_s
        self.taken = threading.Condition(lock)
        self.intake_waiters = 0
        # Monotonic time since which every call waited long before the door, and of the last such
        # call; 0: the last did not (serve/scheduler.py, BACKLOG_TURNS).
        self.backlog_since = self.backlog_last = 0.0

    @property
    def queue_depth(self) -> int:
        return len(self.queue)

    def predict(self, ahead: int, now: float) -> float:
        """Seconds until a request with ``ahead`` requests before it would finish here."""
        service = self.estimator.estimate
        remaining = 0.0
        for started in self.started:
            if started:
                remaining += max(0.0, service - (now - started))
        return predict_finish(service, ahead, len(self.instances), len(self.instances) - self.busy, remaining)

    def start(self, slot: int, job: Job | object, now: float) -> None:
        """Mark ``slot`` busy running ``job`` (or INLINE) from ``now``."""
        self.busy += 1
        self.started[slot] = now
        self.current[slot] = job

    def hold_load(self, now: float) -> None:
        """Count the pool as under load from ``now`` for ``load_hold_s``."""
        self.loaded_until = now + self.load_hold_s

    def shed(self, now: float) -> None:
        """A request was refused at ``now`` because it could not make its deadline, or waited long
        before the door: under load, and shedding."""
        self.hold_load(now)
        self.shedding_until = now + self.shed_hold_s

    def take(self, slot: int, now: float) -> tuple[Job, bool]:
        """Start the next queued job on ``slot``: (the job, whether the pool is under load)."""
        job = self.queue.pop()
        if self.intake_waiters:  # the event loop waits for a job to leave the queue
            self.taken.notify()
        if self.queue:  # others wait behind it: the device is under load
            self.hold_load(now)
        self.start(slot, job, now)
        return job, now < self.loaded_until

    def finish(self, slot: int, turn_end: float | None, run_s: float | None) -> None:
        """Free ``slot``; with ``turn_end`` (monotonic) its turn since ``start`` feeds the admission
        estimate, with ``run_s`` the run alone feeds the inlining one."""
        if turn_end is not None:
            self.estimator.add(turn_end - self.started[slot])
        if run_s is not None:
            self.run_time.add(run_s)
        self.busy -= 1
        self.started[slot] = 0.0
        self.current[slot] = None

    def record(self, seconds: float) -> None:
        """A compute time measured outside serving (warm-up), for both estimates."""
        self.estimator.add(seconds)
        self.run_time.add(seconds)

    def retire(self, slot: int, now: float) -> Job | object:
        """The watchdog's: abandon ``slot``'s run, which it returns (a Job or INLINE); the slot
        stays busy until ``install``, so that nothing is routed to it meanwhile."""
        job = self.current[slot]
        self.generation[slot] += 1
        self.current[slot] = None
        self.started[slot] = now
        return job

    def install(self, slot: int, backend: Backend) -> None:
        """Put a replacement instance in a retired slot and free it."""
        self.instances[slot] = backend
        self.started[slot] = 0.0
        self.busy -= 1


def resolve(future: asyncio.Future, result: Result | None, error: BaseException | None) -> None:
    if future.done():  # cancelled by the client meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def deliver(job: "Job", result: Result | None, error: BaseException | None) -> None:
    try:
        job.loop.call_soon_threadsafe(resolve, job.future, result, error)
    except RuntimeError:  # its event loop is closed: nobody is waiting any more
        pass


def group(instances: Sequence[Backend] | Sequence[Sequence[Backend]]) -> list[list[Backend]]:
    if instances and isinstance(instances[0], Backend):
        return [list(instances)]  # type: ignore[arg-type]
    return [list(group) for group in instances]  # type: ignore[arg-type]
