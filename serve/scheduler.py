"""Per-model batch-1 scheduler: admission control, EDF queues, N instances per device.

A model runs on one or more devices, each with N backend instances, and every
instance owns one worker thread. Nothing is held back to form a batch: a
request goes to the device where it is predicted to finish first, is queued
there (ordered by priority class, then earliest deadline, then arrival), and the
first free worker of that device takes it at once. Workers run the backend
outside every lock and hand results back with ``call_soon_threadsafe``, so the
event loop never blocks on a device. One device's instances, queue and estimates
are an ``InstancePool`` (serve/pool.py): this module decides, the pool's methods
make every change to its state, under this scheduler's lock.

The flow per request (STYLE 12) is door -> schedule -> execute -> update:
- door (``admit``, on the event loop, before the request is decoded): the same
  prediction as schedule's, so that a request shed under overload costs the
  front end as little as it can (issue 22).
- schedule (``submit``, on the event loop): refuse if the model is closing
  (ShuttingDown) or its queues are full (QueueFull); predict the finish time on
  every device; refuse at once if even the best one misses the deadline
  (Overloaded); otherwise queue it on that device.
- execute (a worker): skip it if the client cancelled, drop it if its deadline
  passed while it waited (DeadlineExpired), else run it: ``backend.run_busy`` if
  other requests wait behind it (the CPU backend's one-thread session), else
  ``backend.run``.
- update (the worker, under the lock it takes anyway): feed the instance's turn
  (its run plus the hand-offs around it) to the device's service-time estimate.

With ``admission_control=False`` the model is plain FIFO with bounds: arrival
order, no prediction-based refusal and no expiry drop, as most servers queue.

Inline fast path: when nothing is queued for the model, its backend is
``inline_safe`` (the CPU backend) and its device has a single instance, which is
idle and has not been under load for ``LOAD_HOLD_S``, and the median
``backend.run`` there is at most ``INLINE_MAX_S``, ``run``
calls the backend on the event loop's own thread, as the obvious server does. The
two thread hand-offs it skips (loop -> worker -> loop) cost 60-500 us per request
on two busy cores (py-spy, benchmarks/README.md "Serving overhead"), more than
such a short run. Only single-instance devices qualify: with the loop blocked
nothing else can start, so several instances would run one at a time. The
decision reads the run alone, not the instance's whole turn: a turn through a
worker includes the hand-offs, and judging by it kept a model that once left the
loop on the slow path for good (measured under load: p50 1.43-1.57x the obvious
server's, 1.02-1.19x with the run alone).

Intake hold: gRPC's core sheds the calls that wait in it for the event loop for a
few microseconds of C++ each (serve/server.py, max_pending_rpcs), but every call the
loop takes costs ~130 us of grpc.aio before our handler, refused or not. On a model
of ~1 ms that is the overload's cost: at 3x the loop used 0.42-0.47 of a core, most
of it taking calls only to refuse them, and goodput fell to about half of capacity
(0.25 with the hold: 69-93% of capacity on 2 cores shared with a Python load generator,
82-96% with a core of its own). So, while a device is shedding (a request was refused for
its deadline in the last ``SHED_HOLD_S``, or a backlog stood, below) and its turns are
short (at most ``HOLD_MAX_S``), ``run`` blocks the loop after queueing for as long as
every instance has a job waiting, until a worker takes one (at most ``HOLD_MAX_S``): the
loop takes calls no faster than the device finishes them, and the excess stays in the
core, which sheds it. A refusal starts the hold, not a queue: a closed-loop client with
many calls in flight and no deadline never holds the loop, and keeps its calls in our
queue rather than in the core's short one (measured: benchmarks/README.md, "Overload on
a fast model", session 9).
So does a standing backlog before the door (for ``BACKLOG_S`` every call waited over
``BACKLOG_TURNS`` turns, each wait read from the call's deadline against its
connection's: serve/admission.py, FrontWait): when the core sheds the excess before
any call nears its deadline, nothing is refused, and that wait is the only sign.

Hangs: given ``spawn`` and ``hang_timeout_s``, a ``Watchdog`` (serve/watchdog.py)
retires an instance whose run lasts too long, cancels the run and starts a
replacement. Here the retired worker exits when it sees its slot's generation
change, the inline path fails its request when its run was retired, and
``_install`` puts the replacement in the slot and starts its worker.
"""
from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from typing import Callable, Mapping, Sequence

import numpy as np

from backends.base import Backend
from serve.admission import RESPONSE_SLACK
from serve.errors import DeadlineExpired, Overloaded, QueueFull, ShuttingDown
from serve.pool import INLINE, InstancePool, Job, Result, deliver, group
from serve.watchdog import Watchdog

DEFAULT_PRIORITY = 100  # requests without a `priority` parameter; smaller runs first
# Longest median run made on the event loop (see the module docstring): what other
# models' requests may wait for, against the 60-500 us of hand-offs it saves.
INLINE_MAX_S = 1e-3
# How long a device stays "under load" after a run started with others queued behind
# it: its runs go through ``run_busy`` and none runs inline, so that the gaps of an
# overload (the queue drained for a moment) do not bring back the event loop's runs
# and the spinning threads that starve gRPC. A refusal for a deadline (the door's, the
# inline claim's or the queue's) holds the load too: such a request waited in gRPC's core
# and the event loop, or behind others, until it could no longer finish. Without that an
# overload that starts on the inline path stays there: each run blocks the loop, so
# nothing ever queues behind another and nothing marks the load, while gRPC's core sheds
# and times out the calls that pile up behind the loop (benchmarks/README.md, "Overload
# on a fast model", session 8). Concurrency 1 never queues nor is refused and never sees it.
LOAD_HOLD_S = 0.1
# The intake hold (module docstring): how long a device counts as shedding after a refusal
# for a deadline, and the longest turn, and the longest wait, for which it holds the loop.
# While the hold works, nothing reaches the door late, so nothing renews it: each second
# the loop lets a burst in, which queues until one is refused, and the hold starts again.
# With 0.1 s that happened ten times a second and the queue stood at the refusal point;
# 1 s kept more goodput at 3x (68% and 80% of capacity, 3 rounds each). The wait's bound
# is what another model's request can wait for it, as for an inline run.
SHED_HOLD_S = 1.0
HOLD_MAX_S = 4e-3
# A standing backlog in front of the door starts the intake hold as a refusal does: every
# call for ``BACKLOG_S`` waited over ``BACKLOG_TURNS`` of the device's turns before it
# (CoDel's test, on the wait that serve/admission.py's FrontWait reads from deadlines). With a
# client that costs little a call (benchmarks/loadgen.cc), an overload that starts on the
# inline path stays there with no refusal: each run blocks the loop, the calls wait in
# gRPC's core, which sheds the excess at its bound (16 calls, ~16 turns) before any nears its
# deadline, and the loop and onnxruntime's spinning thread take both cores. Held, the same
# load is served on 0.4 fewer cores (benchmarks/README.md, "Overload on a fast model",
# session 11). At half of capacity a burst waited up to 16 turns for 4 calls in a row, at
# 90% for 38 (~40 ms): a single long wait is a burst, not a backlog. Nor are two long waits
# with no call between them for as long: at concurrency 1, a client's calls in blocks with
# idle gaps between them (benchmarks/paired_c1.py) read as a backlog standing across each gap
# and shed 72 times in 3 rounds, every shed sending the next 0.1 s of calls off the inline
# path (session 12; FrontWait also read each call's 0-1 ms of timeout rounding as a wait).
BACKLOG_TURNS = 8
BACKLOG_S = 0.02


class ModelScheduler:
    """Queues and instances of one loaded model version.

    ``instances`` is either one device's instances, or one sequence of instances
    per device (a model deployed on several devices).
    """

    def __init__(self, name: str, instances: Sequence[Backend] | Sequence[Sequence[Backend]],
                 max_queue_size: int, admission_control: bool = True,
                 spawn: Callable[[int, int], Backend] | None = None, hang_timeout_s: float | None = None) -> None:
        self.name = name
        self.max_queue_size = max_queue_size
        self.admission_control = admission_control
        self._lock = threading.Lock()
        self.pools = [InstancePool(g[0].device, g, self._lock, LOAD_HOLD_S, SHED_HOLD_S)  # per device
                      for g in group(instances)]
        self.instances = [b for pool in self.pools for b in pool.instances]
        self._queued = 0  # over every device; bounded by max_queue_size
        self._seq = itertools.count()
        self._closing = False
        # Devices whose requests may run inline (module docstring); emptied for good when
        # an inline run hangs.
        self._inline_pools = [p for p in self.pools if p.instances[0].inline_safe and len(p.instances) == 1]
        self._threads: dict[tuple[int, int], threading.Thread] = {}
        for index, pool in enumerate(self.pools):
            for slot, backend in enumerate(pool.instances):
                self._start_worker(index, slot, backend)
        self._watchdog = None if spawn is None or hang_timeout_s is None else Watchdog(
            name, self.pools, self._lock, hang_timeout_s, spawn, self._install, self._stop_inlining)

    def _start_worker(self, index: int, slot: int, backend: Backend) -> None:
        pool = self.pools[index]
        thread = threading.Thread(target=self._work, args=(pool, slot, backend, pool.generation[slot]),
                                  daemon=True, name=f"{self.name}-{pool.name}-{slot}")
        self._threads[index, slot] = thread
        thread.start()

    @property
    def queue_depth(self) -> int:
        """Requests waiting for an instance, over every device."""
        return self._queued

    @property
    def busy(self) -> int:
        """Instances running a request now, over every device."""
        return sum(pool.busy for pool in self.pools)

    # -- schedule ---------------------------------------------------------

    def submit(self, inputs: Mapping[str, np.ndarray], deadline: float = math.inf,
               priority: int = DEFAULT_PRIORITY) -> asyncio.Future:
        """Queue one request; the future resolves to a ``Result``. Call from the event loop.

        Raises ShuttingDown, QueueFull or Overloaded at once instead of queueing.
        Cancelling the future only skips the run; ``run`` also takes it out of the queue.
        """
        return self._enqueue(inputs, deadline, priority).future

    async def run(self, inputs: Mapping[str, np.ndarray], deadline: float = math.inf,
                  priority: int = DEFAULT_PRIORITY) -> Result:
        """Run one request: the service's one way in. Call from the event loop.

        Inline on the caller's thread if the fast path applies (module docstring): the
        coroutine then returns without suspending. Otherwise queued (``submit``'s
        refusals apply) and awaited; if the caller is cancelled meanwhile, the request
        is taken out of the queue.
        """
        if self._inline_pools:
            submitted = time.perf_counter_ns()
            claimed = self._claim_inline(deadline)
            if claimed is not None:
                return self._run_inline(inputs, submitted, *claimed)
        job = self._enqueue(inputs, deadline, priority)
        self._hold_intake(job.pool)
        try:
            return await job.future
        except asyncio.CancelledError:
            self._withdraw(job)
            raise

    def _enqueue(self, inputs: Mapping[str, np.ndarray], deadline: float, priority: int) -> Job:
        loop = asyncio.get_running_loop()
        seq = next(self._seq)
        if self.admission_control:
            key = (priority, deadline, seq)
        else:
            key, deadline = (0, 0.0, seq), math.inf  # plain FIFO: arrival order, nothing expires
        with self._lock:
            if self._closing:
                raise ShuttingDown(f"model '{self.name}' is shutting down")
            if self._queued >= self.max_queue_size:
                raise QueueFull(f"model '{self.name}' has {self._queued} requests queued "
                                f"(max_queue_size {self.max_queue_size}); retry later")
            now = time.monotonic()
            pool, ahead, finish = self._best(key, now)
            if deadline != math.inf and finish > (1 - RESPONSE_SLACK) * (deadline - now):
                pool.shed(now)
                raise self._refusal(pool, ahead, finish, deadline - now)
            job = Job(key, deadline, inputs, loop.create_future(), loop, time.perf_counter_ns(), pool)
            pool.queue.insert(key, job, ahead)
            self._queued += 1
            pool.cv.notify()
        return job

    def _hold_intake(self, pool: InstancePool) -> None:
        """Block the event loop while ``pool`` sheds and every instance has a job waiting (the intake
        hold, module docstring), until a worker takes one or ``HOLD_MAX_S`` passes."""
        if time.monotonic() >= pool.shedding_until:  # the common case, read without the lock
            return
        with self._lock:
            now = time.monotonic()
            if (now >= pool.shedding_until or len(pool.queue) < len(pool.instances)
                    or not 0 < pool.estimator.estimate <= HOLD_MAX_S):
                return
            pool.hold_load(now)  # a queue stands: the runs stay off the loop (LOAD_HOLD_S)
            pool.intake_waiters += 1
            try:
                pool.taken.wait_for(lambda: len(pool.queue) < len(pool.instances) or self._closing, HOLD_MAX_S)
            finally:
                pool.intake_waiters -= 1

    def admit(self, deadline: float, priority: int = DEFAULT_PRIORITY, waited: float = 0.0) -> None:
        """The door: refuse now, before the request is decoded, if it cannot make its deadline.

        The same prediction as ``run`` makes when it queues (which checks again), made
        first so that a request shed under overload costs no decode and no queueing:
        DeadlineExpired if its deadline has passed already (it waited in gRPC and the
        event loop), Overloaded if it is predicted to miss. Both carry stage "door".
        ``waited``: how long it waited before the door (serve/admission.py, FrontWait); once
        every call has waited over ``BACKLOG_TURNS`` turns for ``BACKLOG_S``, the device sheds as
        after a refusal (the intake hold)."""
        if not self.admission_control or deadline == math.inf:
            return
        with self._lock:
            now = time.monotonic()
            pool, ahead, finish = self._best((priority, deadline, math.inf), now)
            if finish > (1 - RESPONSE_SLACK) * (deadline - now):
                pool.shed(now)  # it waited in gRPC and the loop: see LOAD_HOLD_S
                raise self._refusal(pool, ahead, finish, deadline - now, "door")
            long_wait = BACKLOG_TURNS * pool.estimator.estimate
            if waited > long_wait > 0:  # see BACKLOG_TURNS
                # The first long wait, or the first after a gap of that long with no call at the door
                # (a standing queue keeps them coming once a turn): a backlog may start from here.
                if not pool.backlog_since or now - pool.backlog_last > long_wait:
                    pool.backlog_since = now
                elif now - pool.backlog_since >= BACKLOG_S:  # a standing backlog: gRPC's core sheds
                    pool.shed(now)
                pool.backlog_last = now
            else:
                pool.backlog_since = 0.0

    def _best(self, key, now: float) -> tuple[InstancePool, int, float]:
        """(pool, requests ahead there, predicted finish) for a request queued with ``key``. Under the lock."""
        pool, ahead, finish = self.pools[0], 0, math.inf
        for candidate in self.pools:  # earliest predicted finish wins; ties go to the first
            position = candidate.queue.position(key)
            predicted = candidate.predict(position, now)
            if predicted < finish:
                pool, ahead, finish = candidate, position, predicted
        return pool, ahead, finish

    def _claim_inline(self, deadline: float) -> tuple[InstancePool, int] | None:
        """An idle instance to run on the loop's thread now, marked busy; None: queue instead."""
        with self._lock:
            if self._queued or self._closing:
                return None
            now = time.monotonic()
            for pool in self._inline_pools:
                if pool.busy or now < pool.loaded_until or not 0 < pool.run_time.estimate <= INLINE_MAX_S:
                    continue
                service = pool.estimator.estimate
                if deadline != math.inf and service > (1 - RESPONSE_SLACK) * (deadline - now):
                    pool.shed(now)
                    raise self._refusal(pool, 0, service, deadline - now)
                pool.start(0, INLINE, now)
                return pool, 0
        return None

    def _run_inline(self, inputs: Mapping[str, np.ndarray], submitted: int, pool: InstancePool, slot: int) -> Result:
        backend = pool.instances[slot]
        start = time.perf_counter_ns()
        try:
            outputs = backend.run(inputs)
            end = time.perf_counter_ns()
            stats = backend.last_device_stats()
        finally:
            with self._lock:
                retired = pool.current[slot] is not INLINE  # the watchdog found it hung (so there is one)
                if not retired:
                    pool.finish(slot, time.monotonic(), (time.perf_counter_ns() - start) / 1e9)
            if retired:  # cancelled, or ended late: it fails as a hung worker's request does
                backend.close()
                raise self._watchdog.hung(pool, slot, (time.perf_counter_ns() - start) / 1e9, " on the event loop")
        return Result(outputs, start - submitted, end - start, backend.instance, stats, pool.name)

    def _refusal(self, pool: InstancePool, ahead: int, finish: float, allowed: float,
                 stage: str = "scheduler") -> Exception:
        if allowed <= 0:
            return DeadlineExpired(f"deadline already passed {-allowed * 1e3:.2f} ms before queueing; not run",
                                   stage)
        return Overloaded(
            f"model '{self.name}' would finish in {finish * 1e3:.2f} ms ({ahead} queued ahead on "
            f"{pool.name}, {pool.estimator.estimate * 1e3:.2f} ms each on {len(pool.instances)} "
            f"instance(s)); the deadline allows {allowed * 1e3:.2f} ms, "
            f"{(1 - RESPONSE_SLACK) * allowed * 1e3:.2f} ms of it for queue and run", stage)

    def _withdraw(self, job: Job) -> None:
        with self._lock:
            if job.pool.queue.remove(job.key) is not None:
                self._queued -= 1

    # -- execute and update -----------------------------------------------

    def _work(self, pool: InstancePool, slot: int, backend: Backend, generation: int) -> None:
        cv = pool.cv
        while True:
            with cv:
                while not pool.queue and pool.generation[slot] == generation:
                    if self._closing:
                        return
                    cv.wait()
                if pool.generation[slot] != generation:  # retired idle: an inline run on it hung
                    cv.notify()  # the wake-up was meant for a worker that serves
                    return
                job, busy = pool.take(slot, time.monotonic())  # busy: the backend's mode for load
                self._queued -= 1
            run_s = self._execute(backend, pool.name, job, busy)
            with cv:
                if pool.generation[slot] != generation:  # retired as hung while it ran
                    break
                # If it ran: the instance's whole turn, hand-offs included, is what the next waits
                # for; the inline decision asks about ``run`` alone, not ``run_busy``.
                ran = run_s is not None
                pool.finish(slot, time.monotonic() if ran else None,
                            run_s if ran and not (busy and backend.busy_mode) else None)
        backend.close()  # its replacement serves in this slot now; its late result was dropped

    def _install(self, index: int, slot: int, backend: Backend) -> None:
        """Put the watchdog's replacement in a retired slot, free the slot and start its worker."""
        pool = self.pools[index]
        with self._lock:
            pool.install(slot, backend)
            self.instances = [b for p in self.pools for b in p.instances]
            self._start_worker(index, slot, backend)
            pool.cv.notify_all()

    def _stop_inlining(self) -> None:
        """An inline run hung: run nothing on the event loop any more (the watchdog's module docstring)."""
        self._inline_pools = []

    @staticmethod
    def _execute(backend: Backend, device: str, job: Job, busy: bool = False) -> float | None:
        """Run one job (``run_busy`` if ``busy``); its run's seconds, None if it did not run (cancelled,
        expired, failed)."""
        if job.future.cancelled():  # the client went away while it waited: never run it
            return None
        start = time.perf_counter_ns()
        if time.monotonic() > job.deadline:
            late = DeadlineExpired(
                f"deadline passed after {(start - job.submitted_ns) / 1e6:.2f} ms in the queue; not run", "expired")
            deliver(job, None, late)
            return None
        try:
            outputs = backend.run_busy(job.inputs) if busy else backend.run(job.inputs)
        except BaseException as exc:  # reported to the one client; the instance keeps serving
            deliver(job, None, exc)
            return None
        end = time.perf_counter_ns()
        result = Result(outputs, start - job.submitted_ns, end - start, backend.instance,
                        backend.last_device_stats(), device)
        deliver(job, result, None)
        return (end - start) / 1e9

    def record_compute(self, device: int, seconds: float) -> None:
        """Feed a compute time measured outside serving (warm-up) to a device's estimate."""
        with self._lock:
            self.pools[device].record(seconds)

    def close(self, timeout: float | None = None) -> bool:
        """Stop accepting, let the workers finish what is queued, join them. Blocking.

        Returns False if some worker was still busy after ``timeout`` seconds.
        """
        with self._lock:
            self._closing = True
            if self._watchdog is not None:
                self._watchdog.stop()
            for pool in self.pools:
                pool.cv.notify_all()
                pool.taken.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        threads = list(self._threads.values())
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        drained = not any(t.is_alive() for t in threads)
        if drained:
            for backend in self.instances:
                backend.close()
        return drained
