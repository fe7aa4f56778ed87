"""Per-model batch-1 scheduler: one queue, N backend instances, no batching.

Each instance owns one worker thread. A request is pushed onto the model's queue
(ordered by priority, then earliest deadline, then arrival) and the first free
worker takes it at once; nothing is held back to form a batch. The worker runs
the backend outside every lock and hands the result back to the event loop with
``call_soon_threadsafe``, so the asyncio side never blocks on a device.

The flow per request is schedule (``submit`` decides: admit, reject) ->
execute (a worker runs it) -> update (the caller records timings from ``Result``).
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from backends.base import Backend, DeviceStats
from serve.errors import DeadlineExpired, QueueFull, ShuttingDown

DEFAULT_PRIORITY = 100  # requests without a `priority` parameter; smaller runs first


@dataclass(slots=True)
class Result:
    """What a worker hands back for one request."""

    outputs: dict[str, np.ndarray]
    queue_ns: int  # from submit to the worker picking it up
    compute_ns: int  # backend.run
    instance: int
    device_stats: DeviceStats | None


@dataclass(order=True, slots=True)
class _Job:
    # Heap order: priority class first, then earliest deadline, then arrival.
    priority: int
    deadline: float  # time.monotonic() seconds; math.inf when none
    seq: int
    inputs: Mapping[str, np.ndarray] = field(compare=False)
    future: asyncio.Future = field(compare=False)
    loop: asyncio.AbstractEventLoop = field(compare=False)
    submitted_ns: int = field(compare=False)


def _resolve(future: asyncio.Future, result: Result | None, error: BaseException | None) -> None:
    if future.done():  # cancelled by the client meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class ModelScheduler:
    """Queue and instances of one loaded model version."""

    def __init__(self, name: str, instances: Sequence[Backend], max_queue_size: int) -> None:
        self.name = name
        self.instances = list(instances)
        self.max_queue_size = max_queue_size
        self._heap: list[_Job] = []
        self._cv = threading.Condition(threading.Lock())
        self._seq = itertools.count()
        self._closing = False
        self.busy = 0  # instances running a request now
        self._threads = [
            threading.Thread(target=self._work, args=(backend,), name=f"{name}-instance-{i}", daemon=True)
            for i, backend in enumerate(self.instances)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def queue_depth(self) -> int:
        return len(self._heap)

    def submit(self, inputs: Mapping[str, np.ndarray], deadline: float = math.inf,
               priority: int = DEFAULT_PRIORITY) -> asyncio.Future:
        """Queue one request; the returned future resolves to a ``Result``. Call from the event loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        job = _Job(priority, deadline, next(self._seq), inputs, future, loop, time.perf_counter_ns())
        with self._cv:
            if self._closing:
                raise ShuttingDown(f"model '{self.name}' is shutting down")
            if len(self._heap) >= self.max_queue_size:
                raise QueueFull(
                    f"model '{self.name}' has {len(self._heap)} requests queued (max_queue_size "
                    f"{self.max_queue_size}); retry later")
            heapq.heappush(self._heap, job)
            self._cv.notify()
        return future

    def _work(self, backend: Backend) -> None:
        instance = backend.instance
        while True:
            with self._cv:
                while not self._heap:
                    if self._closing:
                        return
                    self._cv.wait()
                job = heapq.heappop(self._heap)
                self.busy += 1
            try:
                self._execute(backend, instance, job)
            finally:
                with self._cv:
                    self.busy -= 1

    @staticmethod
    def _execute(backend: Backend, instance: int, job: _Job) -> None:
        if job.future.cancelled():  # the client went away while it waited: never run it
            return
        start = time.perf_counter_ns()
        if time.monotonic() > job.deadline:
            late = DeadlineExpired(
                f"deadline passed after {(start - job.submitted_ns) / 1e6:.2f} ms in the queue; not run")
            job.loop.call_soon_threadsafe(_resolve, job.future, None, late)
            return
        try:
            outputs = backend.run(job.inputs)
        except BaseException as exc:  # reported to the one client; the instance keeps serving
            job.loop.call_soon_threadsafe(_resolve, job.future, None, exc)
            return
        end = time.perf_counter_ns()
        result = Result(outputs, start - job.submitted_ns, end - start, instance, backend.last_device_stats())
        job.loop.call_soon_threadsafe(_resolve, job.future, result, None)

    def close(self, timeout: float | None = None) -> bool:
        """Stop accepting, let the workers finish what is queued, join them. Blocking.

        Returns False if some worker was still busy after ``timeout`` seconds.
        """
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        drained = not any(t.is_alive() for t in self._threads)
        if drained:
            for backend in self.instances:
                backend.close()
        return drained
