"""/metrics counts exactly what was sent, and ModelStatistics agrees with it.

A real server on free ports, requests through tritonclient, and the exposition read
back over HTTP: no Prometheus needed here (tests/metrics/test_prometheus.py has it).
"""
from __future__ import annotations

import time

import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread
from tests.metrics.backends import GatedBackend
from tests.metrics.conftest import add, digits_input, pair_inputs, scrape, value
from tests.server.conftest import two_output_model

DIGITS = dict(model="digits", version="1", device="cpu")
GATED = dict(model="gated", version="1", device="null")
SLOW = dict(model="slow", version="1", device="null")


@pytest.fixture(scope="module")
def served(tmp_path_factory, digits_model):
    repo = ModelRepository(tmp_path_factory.mktemp("repo"))
    add(repo, digits_model, "digits")
    # One instance, room for one waiting request, and a deadline for requests that
    # name none: the gate makes queue-full and deadline rejections deterministic.
    add(repo, two_output_model(), "gated",
        backend="gated", max_queue_size=1, slo_ms=50.0)
    # Admission control refuses every request: warm-up measured 100 ms, the deadline is 20 ms.
    add(repo, two_output_model(), "slow", backend="null", backend_options={"sleep_ms": "100"}, slo_ms=20.0)
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=0)) as handle:
        with grpcclient.InferenceServerClient(handle.address) as client:
            yield handle, client


def _code(call) -> str:
    try:
        call()
    except InferenceServerException as exc:
        return exc.status()
    return "OK"


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_counters_match_requests_and_gauges_read_the_scheduler(served) -> None:
    handle, client = served
    port = handle.server.metrics_port
    ok, bad, unknown = 7, 2, 3
    for _ in range(ok):
        assert _code(lambda: client.infer("digits", [digits_input()])) == "OK"
    for _ in range(bad):
        assert _code(lambda: client.infer("digits", [digits_input(valid=False)])) == "StatusCode.INVALID_ARGUMENT"
    for _ in range(unknown):
        assert _code(lambda: client.infer("no_such_model", [digits_input()])) == "StatusCode.NOT_FOUND"

    assert _code(lambda: client.infer("slow", pair_inputs())) == "StatusCode.RESOURCE_EXHAUSTED"

    # Gated model: A runs (blocked), B waits, C finds the queue full.
    scheduler = handle.server.registry.get("gated").scheduler
    results: dict[str, str] = {}
    GatedBackend.GATE.clear()
    try:
        client.async_infer("gated", pair_inputs(), lambda result, error: results.__setitem__("A", error))
        _wait_for(lambda: scheduler.busy == 1, "A to run")
        client.async_infer("gated", pair_inputs(), lambda result, error: results.__setitem__("B", error))
        _wait_for(lambda: scheduler.queue_depth == 1, "B to queue")
        assert _code(lambda: client.infer("gated", pair_inputs())) == "StatusCode.UNAVAILABLE"
        during = scrape(port)
        time.sleep(0.1)  # B's 50 ms deadline passes while it waits
    finally:
        GatedBackend.GATE.set()
    _wait_for(lambda: len(results) == 2, "A and B to finish")
    assert results["A"] is None
    assert results["B"].status() == "StatusCode.DEADLINE_EXCEEDED"

    assert value(during, "bwserve_inflight_requests") == 2  # A and B
    assert value(during, "bwserve_busy_instances", **GATED) == 1
    assert value(during, "bwserve_queue_depth", **GATED) == 1
    assert value(during, "bwserve_models_ready") == 3

    after = scrape(port)
    req = "bwserve_requests_total"
    assert value(after, req, **DIGITS, code="OK") == ok
    assert value(after, req, **DIGITS, code="INVALID_ARGUMENT") == bad
    assert value(after, req, code="NOT_FOUND") == unknown  # no model labels, see serve.metrics.NO_MODEL
    assert value(after, req, **GATED, code="OK") == 1
    assert value(after, req, **GATED, code="UNAVAILABLE") == 1
    assert value(after, req, **GATED, code="DEADLINE_EXCEEDED") == 1
    total = sum(after[req].values())
    assert value(after, req, **SLOW, code="RESOURCE_EXHAUSTED") == 1
    assert total == ok + bad + unknown + 3 + 1
    rej = "bwserve_rejections_total"
    # Where each was shed: C when it queued, B expired in the queue, slow's at the door.
    assert value(after, rej, **GATED, reason="queue_full", stage="scheduler") == 1
    assert value(after, rej, **GATED, reason="deadline", stage="expired") == 1
    assert value(after, rej, **GATED, reason="admission", stage="door") == 0
    assert value(after, rej, **SLOW, reason="admission", stage="door") == 1
    assert sum(after[rej].values()) == 3
    assert value(after, "bwserve_request_duration_seconds_count", **DIGITS) == ok  # successes only
    assert value(after, "bwserve_request_duration_seconds_bucket", **DIGITS, le="+Inf") == ok
    assert value(after, "bwserve_inflight_requests") == 0
    assert value(after, "bwserve_model_loads_total", model="digits", result="success") == 1


def test_model_statistics_and_histograms_are_one_accounting(served) -> None:
    handle, client = served
    for _ in range(5):
        client.infer("digits", [digits_input()])
    _code(lambda: client.infer("digits", [digits_input(valid=False)]))
    samples = scrape(handle.server.metrics_port)
    stats = client.get_inference_statistics("digits", as_json=True)["model_stats"][0]
    s = stats["inference_stats"]
    ok = value(samples, "bwserve_requests_total", **DIGITS, code="OK")
    failed = sum(v for k, v in samples["bwserve_requests_total"].items()
                 if ("model", "digits") in k and ("code", "OK") not in k)
    assert int(stats["inference_count"]) == int(s["success"]["count"]) == ok
    assert int(s["fail"].get("count", 0)) == failed
    for field, name in (("success", "request"), ("queue", "queue"), ("compute_input", "decode"),
                        ("compute_infer", "compute"), ("compute_output", "encode")):
        hist_sum = value(samples, f"bwserve_{name}_duration_seconds_sum", **DIGITS)
        assert int(s[field]["count"]) == value(samples, f"bwserve_{name}_duration_seconds_count", **DIGITS)
        # Same nanosecond timestamps; only float rounding of the seconds may differ.
        # protobuf's JSON leaves out fields that are zero
        assert int(s[field].get("ns", 0)) == pytest.approx(hist_sum * 1e9, rel=1e-9, abs=ok)


def test_metric_names_follow_prometheus_conventions(served) -> None:
    handle, client = served
    client.infer("digits", [digits_input()])
    names = set(scrape(handle.server.metrics_port))
    histograms = {f"bwserve_{n}_duration_seconds" for n in ("request", "queue", "compute", "decode", "encode")}
    for h in histograms:
        assert {f"{h}_bucket", f"{h}_sum", f"{h}_count"} <= names
    assert {"bwserve_requests_total", "bwserve_rejections_total", "bwserve_model_loads_total",
            "bwserve_inflight_requests", "bwserve_queue_depth", "bwserve_busy_instances",
            "bwserve_instances", "bwserve_models_ready", "bwserve_model_load_duration_seconds"} <= names
    assert not [n for n in names if n.endswith("_total_total") or "_total_" in n]
    # Counters' samples end in _total (or prometheus-client's _created); nothing else does.
    assert {n for n in names if n.endswith("_total")} == {
        "bwserve_requests_total", "bwserve_rejections_total", "bwserve_model_loads_total"}
    assert all(n.startswith("bwserve_") for n in names)


def test_metrics_off_records_nothing_but_statistics_still_count(tmp_path, digits_model) -> None:
    repo = ModelRepository(tmp_path / "repo")
    add(repo, digits_model, "digits")
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None)) as handle:
        with grpcclient.InferenceServerClient(handle.address) as client:
            for _ in range(3):
                client.infer("digits", [digits_input()])
            stats = client.get_inference_statistics("digits", as_json=True)["model_stats"][0]
        metrics = handle.server.metrics
        assert handle.server.metrics_port is None
        assert not metrics.enabled
        assert metrics.request_seconds.items() == [] and metrics.requests.items() == []
        assert int(stats["inference_count"]) == 3


def test_a_failed_request_has_left_the_inflight_gauge_when_its_client_sees_the_error(served) -> None:
    # The error status goes out after the handler returns, not from inside it (abort()),
    # so a client that scrapes right after its error never counts itself in flight.
    handle, client = served
    for _ in range(200):
        assert _code(lambda: client.infer("digits", [digits_input(valid=False)])) == "StatusCode.INVALID_ARGUMENT"
        assert handle.server.metrics.inflight == 0
