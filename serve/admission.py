"""Admission control: an online service-time estimate and a completion-time prediction.

Clockwork (OSDI'20) showed that at batch 1 a request's latency is predictable:
it is the work queued ahead of it plus its own service time. We predict that at
submit time and refuse at once a request that would miss its deadline, instead
of letting it wait, run late and push everyone behind it late too.

The estimate is a quantile of the last ``WINDOW`` service times (an instance's
whole turn per request, hand-offs included) of one model on one device, kept in a ring buffer and recomputed every ``EVERY`` samples, so an
update is O(1) amortised and a prediction reads one float.
"""
from __future__ import annotations

WINDOW = 128  # recent compute times kept per model and device
EVERY = 16  # recompute the quantile after this many new samples
QUANTILE = 0.9  # a high quantile: predictions should err towards refusing
# Share of a request's remaining time kept back for what the scheduler cannot see
# or predict: the response's trip through the event loop, encoding and gRPC back to
# the client, and the OS's jitter. benchmarks/admission.py at 3x overload on 2 shared
# cores (200 ms SLO): with 10% the served p99 at the client overshot the SLO (207-298
# ms); with 25% it stayed under (170 ms) and goodput rose to capacity: the queue never
# ran dry. The cost: a request predicted to need more than 75% of its time is refused.
RESPONSE_SLACK = 0.25
# Calls gRPC's core may hold for the event loop before it sheds new ones itself, no Python
# run (serve/server.py, ServerConfig.max_pending_rpcs; `serve start --max-pending-rpcs`).
# Under the scheduler's intake hold the excess of an overload waits there, first in first
# out, for about this many runs: on a ~1 ms model 16 costs a served request ~20 ms of a
# 50 ms deadline; 32 left 1% late and 64 (the bound before the hold) more than the deadline.
# The cost: a closed-loop client with 32 calls in flight and no deadline loses ~0.5% of them
# to the core, against ~0.1% with 64 (benchmarks/README.md, "Overload on a fast model").
MAX_PENDING_RPCS = 16


class ServiceTimeEstimator:
    """A quantile of recent compute times (seconds). Not thread-safe: callers hold a lock."""

    __slots__ = ("quantile", "_samples", "_next", "_count", "_since", "estimate")

    def __init__(self, quantile: float = QUANTILE, window: int = WINDOW) -> None:
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile must be in (0, 1], got {quantile}")
        self.quantile = quantile
        self._samples = [0.0] * window
        self._next = 0  # ring buffer write position
        self._count = 0  # samples held, up to the window
        self._since = 0  # samples since the last recompute
        self.estimate = 0.0  # 0 until the first sample: nothing known, nothing refused

    @property
    def known(self) -> bool:
        return self._count > 0

    def add(self, seconds: float) -> None:
        """Record one compute time."""
        window = len(self._samples)
        self._samples[self._next] = seconds
        self._next = (self._next + 1) % window
        if self._count < window:
            self._count += 1
        self._since += 1
        # While the window fills, every sample refines the estimate (few, cheap);
        # afterwards only every EVERY samples, so the sort is amortised away.
        if self._count < EVERY or self._since >= EVERY:
            self._since = 0
            ordered = sorted(self._samples[:self._count] if self._count < window else self._samples)
            self.estimate = ordered[min(self._count - 1, int(self.quantile * self._count))]


def predict_finish(service_s: float, ahead: int, instances: int, idle: int, busy_remaining_s: float) -> float:
    """Seconds from now until a request with ``ahead`` requests queued before it would finish.

    ``busy_remaining_s`` is the estimated work left on the busy instances. With an
    idle instance for it, it starts at once; otherwise the work ahead of it (the
    busy instances' remainder plus ``ahead`` full services) is shared by all
    instances, a fluid approximation that is exact for one instance.
    """
    if ahead < idle:
        return service_s
    return (busy_remaining_s + ahead * service_s) / instances + service_s


# How long a connection's most time left to a deadline counts as its clients' timeout
# (``FrontWait``): after that it is learnt again, so that a client that shortens its
# timeout is not read as a backlog for good. The cost: an overload that outlasts it with
# every call queued learns a timeout short by the backlog, and stops signalling until a
# call finds the server idle.
FRONT_WAIT_FORGET_S = 60.0
FRONT_WAIT_PEERS = 4096  # connections remembered; all forgotten when more come


def timeout_unit(timeout_s: float) -> float:
    """The unit gRPC's core sends a timeout of ``timeout_s`` in (the grpc-timeout header, rounded up to
    it: milliseconds below 1 s, then 10 ms, 100 ms, seconds; its Timeout::FromMillis), so the finest
    difference in time left that two calls' deadlines can show."""
    if timeout_s < 1.0:
        return 1e-3
    if timeout_s < 10.0:
        return 1e-2
    return 0.1 if timeout_s < 100.0 else 1.0


class FrontWait:
    """How long a call waited before the door (in gRPC's core and the event loop), from its deadline.

    gRPC tells a handler the time left to a call's deadline, but neither the timeout its client
    set nor when the call arrived: under overload, calls wait in the core (serve/server.py,
    max_pending_rpcs) where no code of ours sees them. A client sends the calls of one
    connection with one timeout, mostly, so the most time left seen on a connection is about
    that timeout (a call that found the server idle), and a call's wait is that less its own
    time left: the queue's sojourn time that CoDel reads, for a queue we cannot read. The
    timeout crosses the wire rounded up to its unit (``timeout_unit``: 1 ms for a 50 ms one),
    so calls that waited nothing read up to a unit apart (measured at concurrency 1 with
    tritonclient: a sawtooth over 0-1.1 ms): a wait is read less that unit, at least what it
    was. Not thread-safe: the event loop's.
    """

    __slots__ = ("_most",)

    def __init__(self) -> None:
        # peer -> (most time left seen, when learnt, that time less its timeout's unit)
        self._most: dict[str, tuple[float, float, float]] = {}

    def waited(self, peer: str, remaining: float, now: float) -> float:
        """Seconds the call from ``peer`` with ``remaining`` seconds left waited at least; 0 if it sets the
        most."""
        most = self._most.get(peer)
        if most is not None and remaining <= most[0] and now - most[1] < FRONT_WAIT_FORGET_S:
            return max(0.0, most[2] - remaining)
        if most is None and len(self._most) >= FRONT_WAIT_PEERS:
            self._most.clear()
        self._most[peer] = (remaining, now, remaining - timeout_unit(remaining))
        return 0.0
