"""One request's accounting: Triton's ModelStatistics and the Prometheus series, together.

``ModelStats.success``/``failure`` are the only places a finished request is
recorded, so the ModelStatistics RPC (plain integer nanoseconds, below) and the
``/metrics`` histograms and counters always count the same requests with the same
timestamps. Updated only on the event loop thread, so no lock is needed.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import grpc

from protos import inference_pb2 as pb
from serve.metrics import ModelMetrics

if TYPE_CHECKING:
    from serve.pool import Result


class ModelStats:
    """Counts and summed durations of one model version, plus its bound metric children."""

    __slots__ = ("success_count", "success_ns", "fail_count", "fail_ns", "queue_ns",
                 "input_ns", "infer_ns", "output_ns", "executions", "last_inference_ms", "metrics")

    def __init__(self, metrics: ModelMetrics | None = None) -> None:
        self.success_count = self.success_ns = self.fail_count = self.fail_ns = 0
        self.queue_ns = self.input_ns = self.infer_ns = self.output_ns = 0
        self.executions = 0
        self.last_inference_ms = 0
        self.metrics = metrics if metrics is not None else ModelMetrics.noop()

    def success(self, start_ns: int, decoded_ns: int, ran_ns: int, end_ns: int, result: "Result") -> None:
        """Record a request that succeeded: handler entry, decoded, backend done, response encoded."""
        total_ns, decode_ns, encode_ns = end_ns - start_ns, decoded_ns - start_ns, end_ns - ran_ns
        self.success_count += 1
        self.success_ns += total_ns
        self.queue_ns += result.queue_ns
        self.input_ns += decode_ns
        self.infer_ns += result.compute_ns
        self.output_ns += encode_ns
        self.executions += 1
        self.last_inference_ms = time.time_ns() // 1_000_000
        m = self.metrics
        m.request.observe(total_ns / 1e9)
        m.queue.observe(result.queue_ns / 1e9)
        m.compute.observe(result.compute_ns / 1e9)
        m.decode.observe(decode_ns / 1e9)
        m.encode.observe(encode_ns / 1e9)
        m.ok.inc()
        device = result.device_stats
        if device is not None:
            m.device_seconds.observe(device.seconds)
            m.device_cycles.observe(device.cycles)
            m.mac_utilisation.observe(device.mac_utilisation)
            if device.per_device_seconds:
                m.fpga_devices.observe(device.per_device_seconds)
                m.fpga_link.observe(device.link_seconds)

    def failure(self, total_ns: int, code: grpc.StatusCode, reason: str | None = None,
                stage: str | None = None) -> None:
        """Record a request that failed with ``code``; ``reason`` and ``stage`` if it was shed
        (serve.metrics.REJECTIONS)."""
        self.fail_count += 1
        self.fail_ns += total_ns
        self.metrics.codes[code].inc()
        if reason is not None:
            self.metrics.rejected[reason, stage or "scheduler"].inc()

    def to_proto(self, name: str, version: str) -> pb.ModelStatistics:
        n = self.success_count
        duration = pb.StatisticDuration
        return pb.ModelStatistics(
            name=name, version=version, last_inference=self.last_inference_ms,
            inference_count=n, execution_count=self.executions,
            inference_stats=pb.InferStatistics(
                success=duration(count=n, ns=self.success_ns),
                fail=duration(count=self.fail_count, ns=self.fail_ns),
                queue=duration(count=n, ns=self.queue_ns),
                compute_input=duration(count=n, ns=self.input_ns),
                compute_infer=duration(count=n, ns=self.infer_ns),
                compute_output=duration(count=n, ns=self.output_ns),
            ),
        )
