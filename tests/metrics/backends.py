"""Backends that exist only in these tests, registered in ``backends.BACKENDS`` by conftest.

``FakeFpgaBackend`` stands in for the FPGA backend that does not exist yet: a null
backend that reports modeled ``DeviceStats`` and has a fixed, deterministic latency
pattern (a long tail on purpose, see ``TAIL``). ``GatedBackend`` blocks every run
until the test opens its gate, so queue depth, busy instances and rejections can
be produced without timing races.
"""
from __future__ import annotations

import threading
import time
from typing import Mapping

import numpy as np

from backends.base import DeviceStats
from backends.null import NullBackend

# Request i (counted per instance from 0, warm-up runs included) sleeps the first
# matching entry's milliseconds: 1 in 200 very slow, 1 in 40 slow, the rest fast.
# The slow group holds the 99th percentile, so histogram_quantile(0.99) falls in the
# slow group's bucket, well above the client's p50 and below the client's maximum.
TAIL = ((200, 60.0), (40, 8.0), (1, 1.0))
CLOCK_HZ = 250e6


class FakeFpgaBackend(NullBackend):
    """A null backend with device label "fpga" that reports modeled device stats."""

    device = "fpga"

    def load(self, model_path) -> None:
        super().load(model_path)
        self._runs = 0
        self._stats: DeviceStats | None = None

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        ms = next(ms for every, ms in TAIL if self._runs % every == 0)
        self._runs += 1
        time.sleep(ms / 1e3)
        cycles = int(ms * 1e-3 * CLOCK_HZ / 10)  # the device is 10x faster than the sleep
        self._stats = DeviceStats(cycles=cycles, seconds=cycles / CLOCK_HZ, mac_utilisation=0.75)
        return super().run(inputs)

    def last_device_stats(self) -> DeviceStats | None:
        return self._stats


class GatedBackend(NullBackend):
    """Runs only while ``GATE`` is set (warm-up runs pass: the gate starts open)."""

    device = "null"
    GATE = threading.Event()
    GATE.set()

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.GATE.wait(30):
            raise TimeoutError("test gate never opened")
        return super().run(inputs)
