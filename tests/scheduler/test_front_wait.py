"""FrontWait: each call's wait before the door, read from its deadline and its connection's.

The unit tests give it times directly; the last two go through a real server and
client: calls with a far shorter deadline than their connection's first read as waits,
and two in a row as a backlog: the model's device starts shedding, no request refused;
calls one at a time, in blocks with idle gaps, never read as one.
"""
from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

import serve.admission as admission_module
import serve.scheduler as scheduler_module
from serve.admission import FRONT_WAIT_FORGET_S, FrontWait, timeout_unit
from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread
from tests.server.conftest import add_model, two_output_model


def test_a_call_waited_the_most_time_left_on_its_connection_less_its_own_and_a_unit() -> None:
    """Less the unit its timeout crossed the wire in, 1 ms below a second: at least the wait."""
    wait = FrontWait()
    assert wait.waited("a", 0.050, now=0.0) == 0.0  # the first call sets the connection's timeout
    assert wait.waited("a", 0.038, now=1.0) == pytest.approx(0.011)
    assert wait.waited("b", 0.030, now=1.0) == 0.0  # another connection, its own timeout
    assert wait.waited("b", 0.0285, now=1.5) == pytest.approx(0.0005)
    assert wait.waited("a", 0.060, now=2.0) == 0.0  # more time left than ever: a longer timeout
    assert wait.waited("a", 0.050, now=2.5) == pytest.approx(0.009)


def test_time_left_within_its_timeouts_unit_reads_as_no_wait() -> None:
    """gRPC's core rounds a timeout up to its unit (1 ms below 1 s, 10 ms below 10 s, ...), so calls
    that found the server idle arrive with time left up to a unit apart."""
    assert [timeout_unit(t) for t in (0.05, 0.999, 1.0, 9.9, 10.0, 99.0, 100.0, 3600.0)] == [
        1e-3, 1e-3, 1e-2, 1e-2, 0.1, 0.1, 1.0, 1.0]
    wait = FrontWait()
    wait.waited("a", 0.0509, now=0.0)  # rounded up the most
    assert [wait.waited("a", left, now=0.1) for left in (0.0500, 0.0503, 0.0507)] == [0.0, 0.0, 0.0]
    wait.waited("b", 5.009, now=0.0)  # a 5 s timeout: in units of 10 ms
    assert wait.waited("b", 5.000, now=0.1) == 0.0
    assert wait.waited("b", 4.989, now=0.1) == pytest.approx(0.010)


def test_a_connections_timeout_is_learnt_again_after_forget_s() -> None:
    wait = FrontWait()
    wait.waited("a", 10.0, now=0.0)
    assert wait.waited("a", 0.050, now=1.0) == pytest.approx(9.85)  # a shorter timeout reads as a wait...
    assert wait.waited("a", 0.050, now=FRONT_WAIT_FORGET_S + 1.0) == 0.0  # ...until it is learnt again
    assert wait.waited("a", 0.040, now=FRONT_WAIT_FORGET_S + 2.0) == pytest.approx(0.009)


def test_connections_are_forgotten_together_when_too_many(monkeypatch) -> None:
    monkeypatch.setattr(admission_module, "FRONT_WAIT_PEERS", 2)
    wait = FrontWait()
    wait.waited("a", 1.0, now=0.0)
    wait.waited("b", 1.0, now=0.0)
    assert wait.waited("a", 0.5, now=0.1) == pytest.approx(0.49)
    wait.waited("c", 1.0, now=0.2)  # a third: the first two are forgotten
    assert wait.waited("a", 0.5, now=0.3) == 0.0


@contextlib.contextmanager
def _serving(tmp_path, sleep_ms: str):
    """A real server with one null model of ``sleep_ms`` a run: (its device's pool, a tritonclient
    on one channel, so one connection, and the model's inputs)."""
    import tritonclient.grpc as grpcclient

    repo = ModelRepository(tmp_path / "repo")
    add_model(repo, two_output_model(), "m", backend="null", backend_options={"sleep_ms": sleep_ms})
    inputs = []
    for name in ("a", "b"):
        inputs.append(grpcclient.InferInput(name, [1, 4], "FP32"))
        inputs[-1].set_data_from_numpy(np.ones((1, 4), np.float32))
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None)) as handle:
        client = grpcclient.InferenceServerClient(handle.address)
        try:
            yield handle.server.registry.get("m").scheduler.pools[0], client, inputs
        finally:
            client.close()


def test_over_grpc_calls_that_read_as_backlogged_start_their_device_shedding(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(scheduler_module, "BACKLOG_S", 0.0)  # two long waits in a row stand
    with _serving(tmp_path, "1") as (pool, client, inputs):
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


def test_over_grpc_calls_one_at_a_time_in_blocks_never_start_shedding(tmp_path) -> None:
    """Calls one at a time with one timeout, in blocks with idle gaps between them (as
    benchmarks/paired_c1.py sends them): no call waits, though their time left jitters by the
    timeout's unit (1 ms, against turns of microseconds) and the gaps are longer than BACKLOG_S."""
    with _serving(tmp_path, "0") as (pool, client, inputs):
        for _ in range(10):
            for _ in range(20):
                client.infer("m", inputs, client_timeout=0.05)
            time.sleep(scheduler_module.BACKLOG_S * 2)
        assert 0 < scheduler_module.BACKLOG_TURNS * pool.estimator.estimate < 1e-3  # turns far under the unit
        assert pool.shedding_until == 0.0  # never shed
