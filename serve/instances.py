"""What the scheduler keeps per device and per request, and how results go back.

``Device`` is one device's instances of a model with their queue, their state and
their service-time estimate; every field is read and written under the model's
scheduler lock. ``Job`` is one queued request, ``Result`` what a run hands back,
``deliver`` the only way a result crosses from a worker thread to the event loop.
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
    device: str = ""  # name of the device group that ran it


@dataclass(slots=True)
class Job:
    key: Key  # its place in its device's queue; unique (see serve.jobqueue)
    deadline: float  # time.monotonic() seconds; math.inf when none or admission is off
    inputs: Mapping[str, np.ndarray]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    submitted_ns: int
    device: "Device"


# What ``Device.current`` holds for an instance running a request inline, on the
# event loop's own thread (serve/scheduler.py): the watchdog (serve/watchdog.py) sees
# the run, and the loop thread fails the request itself once the run stops.
INLINE = object()


class Device:
    """One device's instances of a model: their queue, their state, their estimate.

    Every field is read and written under the scheduler's lock.
    """

    __slots__ = ("name", "instances", "queue", "estimator", "run_time", "cv", "busy", "started", "current",
                 "generation", "loaded_until")

    def __init__(self, name: str, instances: Sequence[Backend], lock: threading.Lock) -> None:
        self.name = name
        self.instances = list(instances)
        self.queue: JobQueue[Job] = JobQueue()
        self.estimator = ServiceTimeEstimator()  # an instance's whole turn: what admission predicts with
        self.run_time = ServiceTimeEstimator(quantile=0.5)  # the median backend.run alone: what inlining asks
        self.cv = threading.Condition(lock)  # one lock per model, one condition per device
        self.busy = 0  # instances running a request now
        self.started = [0.0] * len(self.instances)  # monotonic start of each instance's run; 0 idle
        self.current: list[Job | object | None] = [None] * len(self.instances)  # the job each runs, or INLINE
        self.generation = [0] * len(self.instances)  # bumped when the watchdog retires an instance
        # Monotonic time until which the device counts as under load: set whenever a run
        # starts with others queued behind it (serve/scheduler.py, LOAD_HOLD_S).
        self.loaded_until = 0.0

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
