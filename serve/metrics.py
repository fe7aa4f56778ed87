"""Prometheus metrics: latency histograms, request counters, gauges read at scrape time.

Per-request series are recorded only on the event loop thread, so their children
are plain Python numbers with no lock: a histogram ``observe`` is one ``bisect``
and two additions (about 0.3 us, against 4 us for a prometheus-client child with
its locks and linear bucket scan). Every child is bound to its label values once,
when a model version loads (``ModelMetrics.bind``): the hot path does no label
look-up and no string formatting. The HTTP scrape thread only reads them; a scrape
may see one request's observations half applied, never a lost update (there is
a single writer).

Gauges of state that already exists elsewhere (queue depth, busy instances,
models ready, in-flight requests) cost nothing per request: ``Metrics.collect``
reads them from the registry's schedulers when Prometheus scrapes.

With ``Metrics(enabled=False)`` every per-model child is a shared no-op, so a
server without a metrics endpoint pays nothing (the overhead benchmark compares
the two in one run).
"""
from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from dataclasses import dataclass
from typing import Iterator, Protocol

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from serve.errors import STATUS

log = logging.getLogger("bwserve")

# 25 us .. 10 s, roughly x1.3-2 per bucket, finest around batch-1 latencies (0.1-5 ms).
LATENCY_BUCKETS = (
    25e-6, 50e-6, 75e-6, 100e-6, 150e-6, 200e-6, 300e-6, 400e-6, 500e-6, 650e-6, 800e-6,
    1e-3, 1.25e-3, 1.5e-3, 2e-3, 2.5e-3, 3e-3, 4e-3, 5e-3, 7.5e-3, 10e-3, 15e-3, 25e-3,
    50e-3, 100e-3, 250e-3, 500e-3, 1.0, 2.5, 5.0, 10.0,
)
CYCLE_BUCKETS = tuple(float(round(10 ** (k / 2))) for k in range(2, 19))  # 10 .. 1e9, x3.16
RATIO_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
MODEL_LABELS = ("model", "version", "device")
# (reason, stage) of every request shed (serve.errors.Shed): where the load is shed, the
# door before decode, the scheduler when it queues, or expired unrun in the queue.
REJECTIONS = (("admission", "door"), ("deadline", "door"), ("admission", "scheduler"),
              ("deadline", "scheduler"), ("queue_full", "scheduler"), ("deadline", "expired"))
# The codes ModelInfer can answer with (serve.errors.status_of, plus OK and a client's
# CANCELLED): one series each, created at load time so that rate() sees every first
# error (a series born at 1 hides its first increment from rate and increase).
CODES = (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL,
         *sorted(set(STATUS.values()), key=lambda c: c.value[0]))
# Requests that fail before a model is resolved are counted without model/version/device
# labels (the exposition leaves empty labels out, and PromQL treats them as absent): the
# requested name comes from the client, and labelling by it would let any client create
# unbounded series. Only the codes such a request can get are created ahead: NOT_FOUND
# (no such model or version) and UNAVAILABLE (still loading, or the server stopping).
NO_MODEL = ("", "", "")
NO_MODEL_CODES = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE)


class ServedModels(Protocol):
    """What a scrape reads the gauges from: the registry (serve/registry.py), which itself
    imports this module, so it is known here by what is read of it and nothing more."""

    def loaded(self) -> list:
        """The versions serving now, each with name, version, device and scheduler
        (its queue_depth, busy and instances)."""


class HistogramChild:
    """One histogram series. ``observe`` only from the event loop thread."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds + (float("inf"),)
        self.counts = [0] * len(self.bounds)  # per bucket, not cumulative
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left gives the first bound >= value: Prometheus' `le` semantics.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class CounterChild:
    """One counter series. ``inc`` only from the event loop thread."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class _NoOp:
    """Stands in for every child when metrics are off."""

    __slots__ = ()

    def observe(self, value: float) -> None:
        pass

    def inc(self, amount: int = 1) -> None:
        pass


NOOP = _NoOp()


class _Family:
    """Children of one metric by label values; bound at load time, read at scrape time."""

    def __init__(self, name: str, doc: str, labelnames: tuple[str, ...], make) -> None:
        self.name, self.doc, self.labelnames, self._make = name, doc, labelnames, make
        self._children: dict[tuple[str, ...], object] = {}
        self._lock = threading.Lock()  # binding (load thread) vs. scraping (HTTP thread)

    def labels(self, *values: str):
        with self._lock:
            child = self._children.get(values)
            if child is None:
                child = self._children[values] = self._make()
            return child

    def items(self) -> list[tuple[tuple[str, ...], object]]:
        with self._lock:
            return list(self._children.items())


class HistogramFamily(_Family):
    def __init__(self, name: str, doc: str, labelnames: tuple[str, ...], buckets: tuple[float, ...]) -> None:
        super().__init__(name, doc, labelnames, lambda: HistogramChild(buckets))
        self._le = [floatToGoString(b) for b in buckets] + ["+Inf"]

    def collect(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labelnames)
        for values, child in self.items():
            counts, total = list(child.counts), child.sum
            cumulative, running = [], 0
            for le, n in zip(self._le, counts):
                running += n
                cumulative.append((le, running))
            family.add_metric(values, cumulative, total)
        return family


class CounterFamily(_Family):
    def __init__(self, name: str, doc: str, labelnames: tuple[str, ...]) -> None:
        # The name is given without `_total`; the exposition adds it.
        super().__init__(name, doc, labelnames, CounterChild)

    def collect(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labelnames)
        for values, child in self.items():
            labels = {name: value for name, value in zip(self.labelnames, values) if value}  # see NO_MODEL
            family.samples.append(Sample(f"{self.name}_total", labels, child.value))
        return family


class Metrics:
    """All of bwserve's metric families, in their own registry (a collector itself)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.inflight = 0  # ModelInfer calls inside the server now; event loop thread only
        self._models: ServedModels | None = None

        def hist(name: str, doc: str, buckets=LATENCY_BUCKETS) -> HistogramFamily:
            return HistogramFamily(name, doc, MODEL_LABELS, buckets)

        self.request_seconds = hist("bwserve_request_duration_seconds",
                                    "End to end, gRPC handler entry to response encoded; successful requests")
        self.queue_seconds = hist("bwserve_queue_duration_seconds", "Wait for a free instance")
        self.compute_seconds = hist("bwserve_compute_duration_seconds", "Backend run time")
        self.decode_seconds = hist("bwserve_decode_duration_seconds", "Request decode and validation")
        self.encode_seconds = hist("bwserve_encode_duration_seconds", "Response encoding")
        self.device_seconds = hist("bwserve_device_duration_seconds", "Modeled device time per request (FPGA)")
        self.device_cycles = hist("bwserve_device_cycles", "Modeled device cycles per request (FPGA)",
                                  CYCLE_BUCKETS)
        self.mac_utilisation = hist("bwserve_mac_utilisation_ratio",
                                    "Useful MACs / (matrix engine MACs x cycles the device computes) per request (FPGA)", RATIO_BUCKETS)
        self.fpga_device_seconds = HistogramFamily(
            "bwserve_fpga_device_seconds", "Modeled computing time of each device a model is pinned over, "
            "per request (FPGA over several devices)", (*MODEL_LABELS, "device_index"), LATENCY_BUCKETS)
        self.fpga_link_seconds = hist("bwserve_fpga_link_seconds", "Modeled time some transfer between the "
                                      "devices a model is pinned over is in flight, per request (FPGA)")
        self.requests = CounterFamily("bwserve_requests", "Inference requests by gRPC status code",
                                      (*MODEL_LABELS, "code"))
        self.rejections = CounterFamily("bwserve_rejections", "Requests shed, by reason and stage (door, "
                                        "scheduler, expired)", (*MODEL_LABELS, "reason", "stage"))
        self._families = (self.request_seconds, self.queue_seconds, self.compute_seconds,
                          self.decode_seconds, self.encode_seconds, self.device_seconds,
                          self.device_cycles, self.mac_utilisation, self.fpga_device_seconds,
                          self.fpga_link_seconds, self.requests, self.rejections)
        # Children for requests that name no loaded model; see NO_MODEL.
        self._no_model = ({code: self.requests.labels(*NO_MODEL, code.name) for code in NO_MODEL_CODES}
                          if enabled else {})

        self.registry = r = CollectorRegistry()
        # Per model load, not per request: prometheus-client's own families are fine here.
        self.loads = Counter("bwserve_model_loads", "Model version loads by result (success, failure)",
                             ("model", "result"), registry=r)
        self.load_seconds = Gauge("bwserve_model_load_duration_seconds",
                                  "How long the last load of a model version took, warm-up included",
                                  ("model", "version"), registry=r)
        r.register(self)

    def no_model(self, code: grpc.StatusCode) -> CounterChild | _NoOp:
        """The counter of requests answered ``code`` before a model was resolved."""
        child = self._no_model.get(code)
        if child is None:
            child = self.requests.labels(*NO_MODEL, code.name) if self.enabled else NOOP
        return child

    def watch(self, models: ServedModels) -> None:
        """Read queue depth, busy instances and models ready from ``models`` at each scrape."""
        self._models = models

    def describe(self) -> list:
        return []  # names are fixed; avoids a collect() at register time

    def collect(self) -> Iterator:
        """Called by the scrape thread: the families above plus state read from the schedulers."""
        for family in self._families:
            yield family.collect()
        yield GaugeMetricFamily("bwserve_inflight_requests", "ModelInfer calls inside the server now",
                                value=self.inflight)
        depth = GaugeMetricFamily("bwserve_queue_depth", "Requests waiting for an instance",
                                  labels=MODEL_LABELS)
        busy = GaugeMetricFamily("bwserve_busy_instances", "Instances running a request", labels=MODEL_LABELS)
        instances = GaugeMetricFamily("bwserve_instances", "Instances of a loaded model version",
                                      labels=MODEL_LABELS)
        loaded = self._loaded()
        for model in loaded:
            labels = (model.name, model.version, model.device)
            depth.add_metric(labels, model.scheduler.queue_depth)
            busy.add_metric(labels, model.scheduler.busy)
            instances.add_metric(labels, len(model.scheduler.instances))
        yield depth
        yield busy
        yield instances
        yield GaugeMetricFamily("bwserve_models_ready", "Model versions ready to serve", value=len(loaded))

    def _loaded(self) -> list:
        if self._models is None:
            return []
        for _ in range(3):  # the event loop may load or unload a model while we read
            try:
                return self._models.loaded()
            except RuntimeError:
                continue
        log.warning("metrics: model registry kept changing during a scrape; gauges skipped")
        return []

    def serve_http(self, host: str, port: int) -> int:
        """Start the /metrics HTTP endpoint in a daemon thread; returns the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server.server_address[1]


@dataclass(slots=True)
class ModelMetrics:
    """The children of every per-model series, bound once per loaded version."""

    request: HistogramChild | _NoOp
    queue: HistogramChild | _NoOp
    compute: HistogramChild | _NoOp
    decode: HistogramChild | _NoOp
    encode: HistogramChild | _NoOp
    device_seconds: "_Lazy | _NoOp"
    device_cycles: "_Lazy | _NoOp"
    mac_utilisation: "_Lazy | _NoOp"
    ok: CounterChild | _NoOp
    rejected: dict[tuple[str, str], CounterChild | _NoOp]  # (reason, stage), see REJECTIONS
    codes: dict[grpc.StatusCode, CounterChild | _NoOp]
    labels: tuple[str, str, str]
    fpga_devices: "_PerDevice | _NoOp" = NOOP  # each device of a model pinned over several
    fpga_link: "_Lazy | _NoOp" = NOOP

    @classmethod
    def bind(cls, metrics: Metrics, model: str, version: str, device: str) -> "ModelMetrics":
        """Create (or find) every series of one model version; no-ops when metrics are off.

        The FPGA histograms are bound lazily: their series appear the first time a
        backend reports device stats, so CPU models export no empty FPGA series.
        """
        labels = (model, version, device)
        if not metrics.enabled:
            return cls.noop(labels)
        codes = {code: metrics.requests.labels(*labels, code.name) for code in CODES}
        return cls(
            request=metrics.request_seconds.labels(*labels),
            queue=metrics.queue_seconds.labels(*labels),
            compute=metrics.compute_seconds.labels(*labels),
            decode=metrics.decode_seconds.labels(*labels),
            encode=metrics.encode_seconds.labels(*labels),
            device_seconds=_Lazy(metrics.device_seconds, labels),
            device_cycles=_Lazy(metrics.device_cycles, labels),
            mac_utilisation=_Lazy(metrics.mac_utilisation, labels),
            ok=codes[grpc.StatusCode.OK],
            rejected={key: metrics.rejections.labels(*labels, *key) for key in REJECTIONS},
            codes=codes,
            labels=labels,
            fpga_devices=_PerDevice(metrics.fpga_device_seconds, labels),
            fpga_link=_Lazy(metrics.fpga_link_seconds, labels),
        )

    @classmethod
    def noop(cls, labels: tuple[str, str, str] = NO_MODEL) -> "ModelMetrics":
        """Children that record nothing (metrics off)."""
        return cls(NOOP, NOOP, NOOP, NOOP, NOOP, NOOP, NOOP, NOOP, NOOP,
                   dict.fromkeys(REJECTIONS, NOOP), dict.fromkeys(CODES, NOOP), labels)


class _Lazy:
    """A child bound on first use: CPU models should not export empty FPGA histograms."""

    __slots__ = ("_family", "_labels", "observe")

    def __init__(self, family: HistogramFamily, labels: tuple[str, ...]) -> None:
        self._family, self._labels = family, labels
        self.observe = self._first

    def _first(self, value: float) -> None:
        self.observe = self._family.labels(*self._labels).observe
        self.observe(value)


class _PerDevice:
    """One child per device index, bound the first time a request reports that many
    devices (the count is the model's, fixed at load)."""

    __slots__ = ("_family", "_labels", "_children")

    def __init__(self, family: HistogramFamily, labels: tuple[str, ...]) -> None:
        self._family, self._labels, self._children = family, labels, ()

    def observe(self, values: tuple[float, ...]) -> None:
        """Each device's value, ``values[i]`` under ``device_index="i"``."""
        if len(self._children) != len(values):
            self._children = tuple(self._family.labels(*self._labels, str(i)) for i in range(len(values)))
        for child, value in zip(self._children, values):
            child.observe(value)
