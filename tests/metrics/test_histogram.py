"""Our lock-free histogram exposes exactly what prometheus-client's own would."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from serve.metrics import LATENCY_BUCKETS, HistogramFamily


def test_same_exposition_as_prometheus_client_including_bucket_edges() -> None:
    # Values on a bound (le is inclusive), between bounds, below the first and above the last.
    values = [0.0, 25e-6, 25.000001e-6, 1e-3, 0.0123, 10.0, 11.0, 1e-7, 2.5e-3, 2.5e-3]
    theirs = CollectorRegistry()
    reference = Histogram("x_seconds", "doc", ("model",), buckets=LATENCY_BUCKETS, registry=theirs)
    ours = HistogramFamily("x_seconds", "doc", ("model",), LATENCY_BUCKETS)

    class Collector:
        def collect(self):
            yield ours.collect()

    mine = CollectorRegistry()
    mine.register(Collector())
    for v in values:
        reference.labels("m").observe(v)
        ours.labels("m").observe(v)
    want = [line for line in generate_latest(theirs).decode().splitlines() if "_created" not in line]
    assert generate_latest(mine).decode().splitlines() == want
