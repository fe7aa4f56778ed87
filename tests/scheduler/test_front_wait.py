"""FrontWait: each call's wait before the door, read from its deadline and its connection's.

The unit tests give it times directly; the last one goes through a real server and
client: calls with a far shorter deadline than their connection's first read as waits,
and two in a row as a backlog: the model's device starts shedding, no request refused.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

import serve.admission as admission_module
import serve.scheduler as scheduler_module
from serve.admission import FRONT_WAIT_FORGET_S, FrontWait
from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread
from tests.server.conftest import add_model, two_output_model


def test_a_call_waited_the_most_time_left_on_its_connection_less_its_own() -> None:
    wait = FrontWait()
    assert wait.waited("a", 0.050, now=0.0) == 0.0  # the first call sets the connection's timeout
    assert wait.waited("a", 0.038, now=1.0) == pytest.approx(0.012)
    assert wait.waited("b", 0.030, now=1.0) == 0.0  # another connection, its own timeout
    assert wait.waited("b", 0.029, now=1.5) == pytest.approx(0.001)
    assert wait.waited("a", 0.060, now=2.0) == 0.0  # more time left than ever: a longer timeout
    assert wait.waited("a", 0.050, now=2.5) == pytest.approx(0.010)


def test_a_connections_timeout_is_learnt_again_after_forget_s() -> None:
    wait = FrontWait()
    wait.waited("a", 10.0, now=0.0)
    assert wait.waited("a", 0.050, now=1.0) == pytest.approx(9.95)  # a shorter timeout reads as a wait...
    assert wait.waited("a", 0.050, now=FRONT_WAIT_FORGET_S + 1.0) == 0.0  # ...until it is learnt again
    assert wait.waited("a", 0.040, now=FRONT_WAIT_FORGET_S + 2.0) == pytest.approx(0.010)


def test_connections_are_forgotten_together_when_too_many(monkeypatch) -> None:
    monkeypatch.setattr(admission_module, "FRONT_WAIT_PEERS", 2)
    wait = FrontWait()
    wait.waited("a", 1.0, now=0.0)
    wait.waited("b", 1.0, now=0.0)
    assert wait.waited("a", 0.5, now=0.1) == pytest.approx(0.5)
    wait.waited("c", 1.0, now=0.2)  # a third: the first two are forgotten
    assert wait.waited("a", 0.5, now=0.3) == 0.0


def test_over_grpc_calls_that_read_as_backlogged_start_their_device_shedding(tmp_path, monkeypatch) -> None:
    import tritonclient.grpc as grpcclient

    monkeypatch.setattr(scheduler_module, "BACKLOG_S", 0.0)  # two long waits in a row stand

    repo = ModelRepository(tmp_path / "repo")
    add_model(repo, two_output_model(), "m", backend="null", backend_options={"sleep_ms": "1"})
    inputs = []
    for name in ("a", "b"):
        inputs.append(grpcclient.InferInput(name, [1, 4], "FP32"))
        inputs[-1].set_data_from_numpy(np.ones((1, 4), np.float32))
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None)) as handle:
        pool = handle.server.registry.get("m").scheduler.pools[0]
        client = grpcclient.InferenceServerClient(handle.address)  # one channel: one connection
        try:
            for _ in range(5):  # one timeout: each call waits about nothing before the door
                client.infer("m", inputs, client_timeout=30.0)
            assert time.monotonic() >= pool.shedding_until
            # 29 s less left than its connection's calls had: read as 29 s in gRPC's core, far over
            # BACKLOG_TURNS turns of 1 ms. Served (they can make their deadline), and the device sheds.
            client.infer("m", inputs, client_timeout=1.0)
            assert time.monotonic() >= pool.shedding_until  # one long wait: a burst
            result = client.infer("m", inputs, client_timeout=1.0)
            assert time.monotonic() < pool.shedding_until  # two in a row: a backlog
            assert result.as_numpy("sum").shape == (1, 4)  # served, not refused
        finally:
            client.close()
