"""Triton's per-model statistics (the ModelStatistics RPC), kept as plain integers.

Updated only on the event loop thread, so no lock is needed.
"""
from __future__ import annotations

import time

from protos import inference_pb2 as pb


class ModelStats:
    __slots__ = ("success_count", "success_ns", "fail_count", "fail_ns", "queue_ns",
                 "input_ns", "infer_ns", "output_ns", "executions", "last_inference_ms")

    def __init__(self) -> None:
        self.success_count = self.success_ns = self.fail_count = self.fail_ns = 0
        self.queue_ns = self.input_ns = self.infer_ns = self.output_ns = 0
        self.executions = 0
        self.last_inference_ms = 0

    def success(self, total_ns: int, queue_ns: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        self.success_count += 1
        self.success_ns += total_ns
        self.queue_ns += queue_ns
        self.input_ns += input_ns
        self.infer_ns += infer_ns
        self.output_ns += output_ns
        self.executions += 1
        self.last_inference_ms = time.time_ns() // 1_000_000

    def failure(self, total_ns: int) -> None:
        self.fail_count += 1
        self.fail_ns += total_ns

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
