"""A backend that runs no model: it sleeps for a set time and echoes its inputs.

For tests of the server and scheduler that must not depend on a device. The
service time comes from option ``sleep_ms`` (default 0), the time a load takes
from option ``load_ms`` (default 0); outputs are the spec's outputs filled with
zeros, or the inputs echoed when names match.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping

import numpy as np

from backends.base import Backend


class NullBackend(Backend):
    device = "null"

    def load(self, model_path: Path) -> None:
        time.sleep(float(self.spec.options.get("load_ms", "0")) / 1e3)
        self._sleep_s = float(self.spec.options.get("sleep_ms", "0")) / 1e3
        self._zeros = {out.name: np.zeros([max(d, 1) for d in out.shape], dtype=out.dtype)
                       for out in self.spec.outputs}

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._sleep_s:
            time.sleep(self._sleep_s)
        return {name: inputs.get(name, zeros) for name, zeros in self._zeros.items()}
