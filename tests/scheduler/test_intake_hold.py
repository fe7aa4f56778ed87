"""The intake hold: while a fast model sheds, the event loop takes no new call until a worker takes a job.

Every test keeps the model's one instance busy with a first run held at a gate, queues a
second request behind it, and then submits a third from a task, with a callback scheduled
right after it on the loop. If ``run`` held the loop, the callback runs only once the
worker has taken the waiting jobs, after the gate opened; if not, it runs at once. The
shedding that starts the hold is a refusal for a deadline, or a standing backlog before
the door (``admit``'s ``waited``: every call over BACKLOG_TURNS turns for BACKLOG_S).
"""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

import serve.scheduler as scheduler_module
from backends.base import Backend, ModelSpec
from serve.errors import Overloaded
from serve.scheduler import BACKLOG_TURNS, HOLD_MAX_S, ModelScheduler

WAIT_S = 10.0  # what a helper thread waits for something the code under test should do at once


class GatedBackend(Backend):
    """Runs on its worker only; the first run waits at ``gate``."""

    device = "cpu"

    def __init__(self) -> None:
        super().__init__(ModelSpec(name="m"), 0)
        self.gate = threading.Event()
        self.first_started = threading.Event()
        self.runs = 0

    def load(self, model_path) -> None:
        pass

    def run(self, inputs):
        self.runs += 1
        if self.runs == 1:
            self.first_started.set()
            self.gate.wait(WAIT_S * 3)
        return {"y": np.asarray(inputs["x"]) + 1}


async def _third_request(scheduler: ModelScheduler, backend: GatedBackend, refuse: bool,
                         pause_s: float = 0.0, waits: tuple[float, ...] = ()) -> tuple[bool, bool]:
    """(whether the loop was seen holding, whether the gate was open when the loop next ran a callback)."""
    x = {"x": np.zeros(2)}
    first = scheduler.submit(x)
    while not backend.first_started.is_set():
        await asyncio.sleep(0.001)
    second = scheduler.submit(x)  # waits for the busy instance
    if refuse:
        with pytest.raises(Overloaded):
            scheduler.submit(x, deadline=time.monotonic() + 1e-4)  # cannot make it behind two
    for waited in waits:  # each admitted: it can make its deadline; None: no call for 10 turns
        if waited is None:
            await asyncio.sleep(10e-3)
        else:
            scheduler.admit(time.monotonic() + 10.0, waited=waited)
    if pause_s:
        await asyncio.sleep(pause_s)
    pool = scheduler.pools[0]
    seen_holding = []

    def release() -> None:  # opens the gate once the loop waits in the hold, or after WAIT_S
        until = time.monotonic() + WAIT_S
        while not pool.intake_waiters and not looped.is_set() and time.monotonic() < until:
            time.sleep(0.0005)
        seen_holding.append(bool(pool.intake_waiters))
        backend.gate.set()

    looped = threading.Event()
    gate_open_when_looped = []
    releaser = threading.Thread(target=release)
    releaser.start()
    third = asyncio.ensure_future(scheduler.run(x))
    asyncio.get_running_loop().call_soon(lambda: (gate_open_when_looped.append(backend.gate.is_set()), looped.set()))
    await asyncio.gather(first, second, third)
    releaser.join()
    return seen_holding[0], gate_open_when_looped[0]


def _scheduler(estimate_s: float) -> tuple[ModelScheduler, GatedBackend]:
    backend = GatedBackend()
    scheduler = ModelScheduler("m", [backend], max_queue_size=8)
    scheduler.record_compute(0, estimate_s)
    return scheduler, backend


def test_while_shedding_the_loop_waits_until_the_worker_takes_the_waiting_jobs(monkeypatch) -> None:
    monkeypatch.setattr(scheduler_module, "HOLD_MAX_S", WAIT_S * 3)  # the helper thread may be slow to run
    scheduler, backend = _scheduler(1e-3)
    held, gate_open = asyncio.run(_third_request(scheduler, backend, refuse=True))
    scheduler.close()
    assert held and gate_open
    assert backend.runs == 3


LONG, SHORT = (BACKLOG_TURNS + 1) * 1e-3, (BACKLOG_TURNS - 1) * 1e-3  # waits against turns of 1 ms


def test_a_standing_backlog_before_the_door_starts_the_hold_without_a_refusal(monkeypatch) -> None:
    """gRPC's core may shed an overload's excess before any call nears its deadline: then the wait
    before the door is the only sign of the backlog."""
    monkeypatch.setattr(scheduler_module, "HOLD_MAX_S", WAIT_S * 3)
    monkeypatch.setattr(scheduler_module, "BACKLOG_S", 0.0)  # two long waits in a row stand
    scheduler, backend = _scheduler(1e-3)
    held, gate_open = asyncio.run(_third_request(scheduler, backend, refuse=False, waits=(LONG, LONG)))
    scheduler.close()
    assert held and gate_open
    assert backend.runs == 3


WAITS = {"short waits": (SHORT, SHORT, SHORT), "one long wait": (LONG,), "backlog broken": (LONG, SHORT, LONG),
         "long waits apart": (LONG, None, LONG)}


@pytest.mark.parametrize("case", ["no refusal", "long turns", "shedding over", *WAITS])
def test_the_loop_does_not_wait(case: str, monkeypatch) -> None:
    """A closed-loop client with calls queued and no deadline, a model whose turns are longer than
    HOLD_MAX_S, a device whose last refusal is older than SHED_HOLD_S, calls that waited fewer than
    BACKLOG_TURNS turns before the door, and long waits that do not stand (a burst, broken by a
    short one, or further apart than BACKLOG_TURNS turns with no call between) never hold the loop."""
    monkeypatch.setattr(scheduler_module, "BACKLOG_S", 0.0)  # two long waits in a row would stand
    if case == "shedding over":
        monkeypatch.setattr(scheduler_module, "SHED_HOLD_S", 0.05)
    scheduler, backend = _scheduler(HOLD_MAX_S * 3 if case == "long turns" else 1e-3)
    held, gate_open = asyncio.run(_third_request(scheduler, backend, refuse=case in ("long turns", "shedding over"),
                                                 pause_s=0.1 if case == "shedding over" else 0.0,
                                                 waits=WAITS.get(case, ())))
    scheduler.close()
    assert not held and not gate_open
    assert backend.runs == 3


def test_the_hold_ends_after_hold_max_s_if_no_worker_takes_a_job() -> None:
    """A run that hangs holds the loop for HOLD_MAX_S at most, not until the watchdog acts."""
    scheduler, backend = _scheduler(1e-3)
    x = {"x": np.zeros(2)}

    async def main() -> tuple[float, bool]:
        first = scheduler.submit(x)
        while not backend.first_started.is_set():
            await asyncio.sleep(0.001)
        second = scheduler.submit(x)
        with pytest.raises(Overloaded):
            scheduler.submit(x, deadline=time.monotonic() + 1e-4)
        looped = asyncio.get_running_loop().create_future()
        start = time.monotonic()
        third = asyncio.ensure_future(scheduler.run(x))
        asyncio.get_running_loop().call_soon(lambda: looped.set_result((time.monotonic() - start,
                                                                       backend.gate.is_set())))
        waited, gate_open = await looped
        backend.gate.set()
        await asyncio.gather(first, second, third)
        return waited, gate_open

    waited, gate_open = asyncio.run(main())
    scheduler.close()
    assert not gate_open  # the loop ran on while the first run still hung
    assert waited >= HOLD_MAX_S  # after the bounded wait, which a notify alone could end early
