"""Prometheus metrics: latency histograms, request counters, queue gauges.

Every per-request series is bound to its label values once, when a model version
loads (``ModelMetrics``), so the hot path does no label look-up or string
formatting: just ``observe``/``inc`` on prepared children.
"""
from __future__ import annotations

from dataclasses import dataclass

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# 25 us .. 10 s, roughly x2 per bucket with extra resolution around 0.1-5 ms.
LATENCY_BUCKETS = (
    25e-6, 50e-6, 75e-6, 100e-6, 150e-6, 200e-6, 300e-6, 400e-6, 500e-6, 650e-6, 800e-6,
    1e-3, 1.25e-3, 1.5e-3, 2e-3, 2.5e-3, 3e-3, 4e-3, 5e-3, 7.5e-3, 10e-3, 15e-3, 25e-3,
    50e-3, 100e-3, 250e-3, 500e-3, 1.0, 2.5, 5.0, 10.0,
)
MODEL_LABELS = ("model", "version", "device")
REJECT_REASONS = ("admission", "queue_full", "deadline")


class Metrics:
    """All of bwserve's metric families, in their own registry."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()

        def hist(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, MODEL_LABELS, buckets=LATENCY_BUCKETS, registry=r)

        self.request_seconds = hist("bwserve_request_duration_seconds",
                                    "End to end: gRPC handler entry to response, successful requests")
        self.queue_seconds = hist("bwserve_queue_duration_seconds", "Time waiting for a free instance")
        self.compute_seconds = hist("bwserve_compute_duration_seconds", "Backend run time")
        self.decode_seconds = hist("bwserve_decode_duration_seconds", "Request decode and validation")
        self.encode_seconds = hist("bwserve_encode_duration_seconds", "Response encoding")
        self.device_seconds = hist("bwserve_device_duration_seconds", "Modeled device time (FPGA)")
        self.device_cycles = Histogram(
            "bwserve_device_cycles", "Modeled device cycles per request (FPGA)", MODEL_LABELS,
            buckets=tuple(10 ** (k / 2) for k in range(2, 19)), registry=r)
        self.mac_utilisation = Histogram(
            "bwserve_mac_utilisation_ratio", "Useful MACs / array MACs over a request (FPGA)",
            MODEL_LABELS, buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0), registry=r)
        self.requests = Counter("bwserve_requests", "Inference requests by gRPC status code",
                                (*MODEL_LABELS, "code"), registry=r)
        self.rejections = Counter("bwserve_rejections", "Requests refused by the scheduler",
                                  (*MODEL_LABELS, "reason"), registry=r)
        self.in_flight = Gauge("bwserve_inflight_requests", "Requests inside the server now", registry=r)
        self.queue_depth = Gauge("bwserve_queue_depth", "Requests waiting", MODEL_LABELS, registry=r)
        self.busy_instances = Gauge("bwserve_busy_instances", "Instances running a request",
                                    MODEL_LABELS, registry=r)
        self.models_ready = Gauge("bwserve_models_ready", "Model versions ready to serve", registry=r)
        self.loads = Counter("bwserve_model_loads", "Model version loads by result",
                             ("model", "result"), registry=r)
        self.load_seconds = Gauge("bwserve_model_load_duration_seconds",
                                  "Time the last load of a model version took, warm-up included",
                                  ("model", "version"), registry=r)

    def serve_http(self, host: str, port: int) -> int:
        """Start the /metrics HTTP endpoint in a daemon thread; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server.server_address[1]


@dataclass(slots=True)
class ModelMetrics:
    """The children of every per-model series, bound once per loaded version."""

    request: object
    queue: object
    compute: object
    decode: object
    encode: object
    device_seconds: object
    device_cycles: object
    mac_utilisation: object
    ok: object
    rejected: dict[str, object]
    codes: dict[grpc.StatusCode, object]
    labels: tuple[str, str, str]

    @classmethod
    def bind(cls, metrics: Metrics, model: str, version: str, device: str) -> "ModelMetrics":
        labels = (model, version, device)
        codes = {code: metrics.requests.labels(*labels, code.name) for code in grpc.StatusCode}
        return cls(
            request=metrics.request_seconds.labels(*labels),
            queue=metrics.queue_seconds.labels(*labels),
            compute=metrics.compute_seconds.labels(*labels),
            decode=metrics.decode_seconds.labels(*labels),
            encode=metrics.encode_seconds.labels(*labels),
            device_seconds=metrics.device_seconds.labels(*labels),
            device_cycles=metrics.device_cycles.labels(*labels),
            mac_utilisation=metrics.mac_utilisation.labels(*labels),
            ok=codes[grpc.StatusCode.OK],
            rejected={reason: metrics.rejections.labels(*labels, reason) for reason in REJECT_REASONS},
            codes=codes,
            labels=labels,
        )
