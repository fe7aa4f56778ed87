"""Stopping without cancelling a request: every accepted one finishes, every new one is refused.

``grpc.aio.Server.stop(grace)`` lets started RPCs finish, but calls that reached gRPC's
core and were not yet handed to the application are dropped when the core shuts down,
and their clients see CANCELLED, not UNAVAILABLE: under steady load (``serve bench
--concurrency 4``) a stop cancelled two or three of them. So the server stops in three
steps:

1. ``refusing``: ModelInfer stops accepting. A new call is held, not answered: a client
   with its calls held sends no more, so none piles up in the core's queue.
2. The accepted calls (``Metrics.inflight``) finish, and calls already in the core's
   queue are handed over and held too: the queue is taken as empty once no new call has
   come for ``QUIET_S`` (the core hands a queued call over within an event loop turn or
   two). Both within the grace period.
3. The core shuts down (from then on nothing new is handed to the application and the
   transport refuses new streams, which clients see as UNAVAILABLE); then the held calls
   are answered UNAVAILABLE ("shutting down"), and the server stops.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import grpc

from serve.errors import ShuttingDown

POLL_S = 0.005  # how often step 2 looks at the in-flight count; nothing per request
QUIET_S = 0.1  # no new call for this long: the core's queue has been handed over


@dataclass
class DrainReport:
    finished: int = 0  # accepted before the stop, and answered
    refused: int = 0  # came after it: UNAVAILABLE
    still_running: int = 0  # cancelled by gRPC when the grace period ran out
    seconds: float = 0.0


class Drain:
    def __init__(self, inflight) -> None:
        self._inflight = inflight  # () -> accepted ModelInfer calls not yet answered
        self.refusing = False  # read by ModelInfer on every call: one attribute, nothing else
        self._answer: asyncio.Event | None = None
        self._last_call = 0.0  # monotonic time of the last call refused
        self.report = DrainReport()

    async def refusal(self) -> ShuttingDown:
        """Hold a call that came after the stop until the core has shut down; its error."""
        self.report.refused += 1
        self._last_call = time.monotonic()
        await self._answer.wait()
        return ShuttingDown("the server is shutting down: retry, on another replica if there is one")

    async def stop(self, server: grpc.aio.Server, grace: float) -> DrainReport:
        start = time.monotonic()
        self._answer = asyncio.Event()
        self._last_call = start
        self.refusing = True
        accepted = self._inflight()
        deadline = start + grace
        while (self._inflight() or time.monotonic() - self._last_call < QUIET_S) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
        still = self._inflight()
        self.report.finished, self.report.still_running = accepted - still, still
        stopping = asyncio.ensure_future(server.stop(max(0.0, deadline - time.monotonic())))
        # grpc.aio calls the core's shutdown before its first await: after this step no
        # call is handed to us any more, and the held ones can be answered.
        await asyncio.sleep(0)
        self._answer.set()
        await stopping
        self.report.seconds = time.monotonic() - start
        return self.report
