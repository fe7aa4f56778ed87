"""Ctrl-C under load: every accepted request finishes, the rest get UNAVAILABLE, none CANCELLED.

A real `serve start` process, Triton's own client from four threads back to back (as
`serve bench --concurrency 4` loads it), and a real SIGINT. grpc.aio's own stop used to
cancel the two or three calls still queued in gRPC's core (serve/drain.py).
"""
from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.scheduler.test_shutdown import _serve_slow_model

CLIENTS = 4
SLEEP_MS = 20  # one instance: at the signal one request runs and up to three wait for it
LOADED_S = 1.0  # load before the signal
MAX_REQUESTS = 5000  # per client, a bound on the loop whatever happens


def _hammer(address: str, stop: threading.Event, codes: Counter, lock: threading.Lock) -> None:
    """Requests back to back, errors included (a closed-loop bench does not stop at one)."""
    x = np.ones((1, 4), np.float32)
    with grpcclient.InferenceServerClient(address) as client:
        inputs = [grpcclient.InferInput(n, [1, 4], "FP32") for n in ("a", "b")]
        for i in inputs:
            i.set_data_from_numpy(x)
        for _ in range(MAX_REQUESTS):
            if stop.is_set():
                return
            try:
                client.infer("slow", inputs, client_timeout=30)
                code = "OK"
            except InferenceServerException as exc:
                code = str(exc.status()).removeprefix("StatusCode.")
            with lock:
                codes[code] += 1


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_ctrl_c_under_load_finishes_the_accepted_and_refuses_the_rest(tmp_path: Path, event_loop: str) -> None:
    proc, address, _ = _serve_slow_model(tmp_path, SLEEP_MS, event_loop)
    codes, lock, stop = Counter(), threading.Lock(), threading.Event()
    threads = [threading.Thread(target=_hammer, args=(address, stop, codes, lock)) for _ in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while codes["OK"] < 20 and time.monotonic() < deadline:  # every client connected and served
            time.sleep(0.01)
        time.sleep(LOADED_S)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        # The clients go on sending to the closed port for a moment, as a bench would.
        while codes["UNAVAILABLE"] < 10 * CLIENTS and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stdout.read()
    assert set(codes) == {"OK", "UNAVAILABLE"}, (codes, log)
    match = re.search(r"stopped: (\d+) requests in flight finished, (\d+) new ones refused \(UNAVAILABLE\), "
                      r"in [\d.]+ s", log)
    assert match, log
    # One request running and the other clients' waiting for the single instance: all of them finish.
    assert int(match.group(1)) >= 1, log
    assert "were still running when the grace period ran out" not in log
