"""Hang watchdog: retires a model's instances whose run lasts too long and starts fresh ones.

A Python thread cannot be killed, so a hung instance is abandoned: its request
fails now with InstanceHung, a new instance (``spawn``: created, loaded, warmed
up) takes its slot, and the old thread exits, closing its backend, if the run
ever returns. The hung run is also asked to stop (``Backend.cancel``), which
matters most for a run inline on the event loop: it blocks every model's
requests. Its request fails once it stops, and the model runs nothing inline any
more: the inputs that hung it may come again, and on a worker a hang blocks one
instance, not the server.

The watchdog shares the scheduler's ``InstancePool`` state (serve/pool.py), under
the model's lock. Retiring a slot (``InstancePool.retire``) bumps its generation
and clears its current run: the slot's worker (``ModelScheduler._work``) sees its
generation change and exits, and an inline run (``ModelScheduler._run_inline``)
sees ``current`` is no longer ``INLINE`` and fails its own request with
``Watchdog.hung``. A retired slot looks busy until the scheduler's ``install``
puts the replacement in, so nothing is routed to it meanwhile.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Sequence

from backends.base import Backend
from serve.errors import InstanceHung
from serve.pool import INLINE, InstancePool, deliver

log = logging.getLogger("bwserve")


class Watchdog:
    """The thread that watches one model's instances; started at once, ended by ``stop``.

    ``install(index, slot, backend)`` puts a replacement in a retired slot and frees
    it; ``stop_inlining()`` keeps the model off the event loop for good.
    """

    def __init__(self, model: str, pools: Sequence[InstancePool], lock: threading.Lock, timeout_s: float,
                 spawn: Callable[[int, int], Backend], install: Callable[[int, int, Backend], None],
                 stop_inlining: Callable[[], None]) -> None:
        self.model = model
        self.timeout_s = timeout_s
        self._pools = pools
        self._lock = lock
        self._spawn = spawn
        self._install = install
        self._stop_inlining = stop_inlining
        self._stopped = False
        threading.Thread(target=self._watch, daemon=True, name=f"{model}-watchdog").start()

    def stop(self) -> None:
        """End the thread after its current round; a replacement being spawned is still installed."""
        self._stopped = True

    def hung(self, pool: InstancePool, slot: int, ran_s: float, where: str = "") -> InstanceHung:
        """The error a retired run's request fails with; ``where`` says where it ran."""
        return InstanceHung(
            f"model '{self.model}': {pool.name} instance {slot} ran for {ran_s:.1f} s{where}, over the "
            f"{self.timeout_s:g} s limit; the instance is being replaced, retry")

    def _watch(self) -> None:
        while not self._stopped:
            time.sleep(min(1.0, self.timeout_s / 4))
            for index, slot, job, ran_s in self._retire_overdue():
                self._replace(index, slot, job, ran_s)

    def _retire_overdue(self) -> list[tuple[int, int, object, float]]:
        """Retire every run over the limit; (pool index, slot, its job or INLINE, seconds run) each."""
        hung = []
        with self._lock:
            now = time.monotonic()
            for index, pool in enumerate(self._pools):
                for slot, started in enumerate(pool.started):
                    if started and now - started > self.timeout_s and pool.current[slot] is not None:
                        hung.append((index, slot, pool.retire(slot, now), now - started))
        return hung

    def _replace(self, index: int, slot: int, job: object, ran_s: float) -> None:
        """Fail a retired run's request, ask the run to stop, and start a fresh instance in its slot."""
        pool = self._pools[index]
        log.error("model %s: %s instance %d hung for %.1f s%s; replacing it", self.model, pool.name,
                  slot, ran_s, " inline, on the event loop" if job is INLINE else "")
        if job is INLINE:  # the loop's thread fails its request once the run stops
            self._stop_inlining()
        else:
            deliver(job, None, self.hung(pool, slot, ran_s))
        pool.instances[slot].cancel()  # only this thread replaces it: still the hung one
        try:
            backend = self._spawn(index, slot)
        except Exception as exc:  # the slot stays busy: one instance fewer, the rest serve
            log.error("model %s: cannot replace %s instance %d: %s", self.model, pool.name, slot, exc)
            return
        self._install(index, slot, backend)
