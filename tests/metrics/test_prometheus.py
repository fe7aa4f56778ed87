"""A real Prometheus scrapes a real bwserve; every PromQL expression of the Grafana dashboard answers.

The FPGA panels get their data from ``FakeFpgaBackend`` (tests/metrics/backends.py),
a null backend that reports modeled DeviceStats, registered only in these tests.
"""
from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread
from tests.metrics.conftest import add, digits_input, pair_inputs, scrape
from tests.metrics.prometheus import Prometheus
from tests.server.conftest import two_output_model

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "bwserve.json"
# Grafana's variables as the test fills them: every model and device, and a rate
# window that covers the whole test (each series starts at 0 before any traffic).
VARIABLES = {"$__rate_interval": "5m", "$model": ".*", "$device": ".*"}
TAIL_REQUESTS = 400
LAZY_SERIES = ("bwserve_device_duration_seconds_count", "bwserve_device_cycles_count",
               "bwserve_mac_utilisation_ratio_count")


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel, variables filled in."""
    exprs = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", ()):
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, f"unfilled Grafana variable in {expr}"
            exprs.append((panel["title"], expr))
    return exprs


@pytest.fixture(scope="module")
def scraped(tmp_path_factory, digits_model):
    """Server, Prometheus and what the client measured, after Prometheus saw every request."""
    tmp = tmp_path_factory.mktemp("prom")
    repo = ModelRepository(tmp / "repo")
    add(repo, digits_model, "digits")
    add(repo, two_output_model(), "fpga_tail", backend="fake_fpga", warmup_runs=0)
    add(repo, two_output_model(), "slow", backend="null", backend_options={"sleep_ms": "100"}, slo_ms=20.0)
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=0)) as handle:
        prometheus = Prometheus(tmp, f"127.0.0.1:{handle.server.metrics_port}")
        try:
            with grpcclient.InferenceServerClient(handle.address) as client:
                latencies = []
                inputs = pair_inputs()
                # The FPGA series are born at the first request that reports device stats
                # (serve.metrics._Lazy). rate() needs a sample of them before the rest of the
                # traffic: a series first scraped at its final count has a rate of 0, and
                # those panels' histogram_quantile is NaN. So: one request, a scrape of
                # every one of them, then the rest.
                for _ in range(TAIL_REQUESTS):
                    if len(latencies) == 1:
                        prometheus.wait_for(lambda: all(prometheus.query(f'{name}{{model="fpga_tail"}}')
                                                        for name in LAZY_SERIES),
                                            "a scrape of the FPGA series after their first request")
                    t0 = time.perf_counter()
                    client.infer("fpga_tail", inputs)
                    latencies.append(time.perf_counter() - t0)
                for _ in range(20):
                    client.infer("digits", [digits_input()])
                for model, inputs in (("digits", [digits_input(valid=False)]), ("nowhere", [digits_input()]),
                                      ("slow", pair_inputs())):
                    with pytest.raises(InferenceServerException):
                        client.infer(model, inputs)
            sent = sum(scrape(handle.server.metrics_port)["bwserve_requests_total"].values())
            assert sent == TAIL_REQUESTS + 20 + 3
            total = lambda: prometheus.query("sum(bwserve_requests_total)")  # noqa: E731
            prometheus.wait_for(lambda: total() and float(total()[0]["value"][1]) == sent,
                                "a scrape after the last request")
            yield prometheus, np.array(latencies)
        finally:
            prometheus.stop()


def test_every_dashboard_expression_returns_data(scraped) -> None:
    prometheus, _ = scraped
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    empty = []
    for title, expr in exprs:
        values = [float(s["value"][1]) for s in prometheus.query(expr)]
        if not any(math.isfinite(v) for v in values):
            empty.append(f"{title}: {expr} -> {values}")
    assert not empty, "\n".join(empty)


def test_p99_lies_between_client_p50_and_max(scraped) -> None:
    prometheus, latencies = scraped
    p99 = [e for t, e in dashboard_exprs() if e.startswith("histogram_quantile(0.99, ")
           and "bwserve_request_duration_seconds_bucket" in e]
    assert len(p99) == 1
    series = [s for s in prometheus.query(p99[0]) if s["metric"].get("model") == "fpga_tail"]
    assert len(series) == 1 and series[0]["metric"]["device"] == "fpga"
    server_p99 = float(series[0]["value"][1])
    assert np.percentile(latencies, 50) <= server_p99 <= latencies.max()


def test_prometheus_counts_exactly_what_was_sent(scraped) -> None:
    prometheus, _ = scraped

    def one(expr: str) -> float:
        result = prometheus.query(expr)
        assert len(result) == 1, (expr, result)
        return float(result[0]["value"][1])

    assert one('bwserve_requests_total{model="fpga_tail", code="OK"}') == TAIL_REQUESTS
    assert one('bwserve_requests_total{model="digits", code="OK"}') == 20
    assert one('bwserve_requests_total{model="digits", code="INVALID_ARGUMENT"}') == 1
    assert one('bwserve_requests_total{model="", code="NOT_FOUND"}') == 1
    assert one('bwserve_rejections_total{model="slow", reason="admission", stage="door"}') == 1
    assert one('bwserve_device_cycles_count{model="fpga_tail"}') == TAIL_REQUESTS


def test_dashboard_aggregates_over_replicas() -> None:
    for title, expr in dashboard_exprs():
        for match in re.finditer(r"histogram_quantile\(([\d.]+), sum by \(([^)]*)\)", expr):
            assert match.group(2).split(",")[0].strip() == "le", (title, expr)
        assert "histogram_quantile" not in expr or "sum by (le" in expr, (title, expr)
        # No series is kept apart by replica: no grouping by instance or pod.
        assert not re.search(r"by \([^)]*\b(instance|pod)\b", expr), (title, expr)
