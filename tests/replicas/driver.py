"""The client host of the multi-host tests: runs load and reads the replicas' counters.

Runs inside the client's namespace (only from there are the replicas reachable) and
takes one JSON command per line on stdin, answering one JSON line on stdout:

- ``{"cmd": "load", "target": T, "seconds": S, "concurrency": C, "authority": A?}``:
  closed-loop load through ``serve.bench.run_load`` (the shipped channel options:
  round_robin + retry on UNAVAILABLE); answers ok, errors by code, and how many
  inferences each replica counted meanwhile.
- ``{"cmd": "infer", "target": T, "authority": A?}``: one request; answers its status code.
- ``{"cmd": "envoy", "admin": URL}``: Envoy's view of which replicas are healthy.
"""
from __future__ import annotations

import argparse
import json
import sys

import grpc
import numpy as np

from protos import inference_pb2 as pb
from protos import inference_pb2_grpc as pb_grpc
from serve.bench import run_load
from serve.client import CHANNEL_OPTIONS, build_request
from tests.replicas.envoy import healthy_hosts

MODEL = "adder"
REQUEST = build_request(MODEL, {"a": np.ones((1, 4), np.float32), "b": np.ones((1, 4), np.float32)})


def inference_count(address: str) -> int | None:
    """The replica's own count of inferences (ModelStatistics), None if it does not answer."""
    try:
        with grpc.insecure_channel(address) as channel:
            stats = pb_grpc.GRPCInferenceServiceStub(channel).ModelStatistics(
                pb.ModelStatisticsRequest(name=MODEL), timeout=2)
    except grpc.RpcError:
        return None
    return sum(s.inference_count for s in stats.model_stats)


def counts(replicas: list[str]) -> dict[str, int | None]:
    return {address: inference_count(address) for address in replicas}


def handle(command: dict, replicas: list[str]) -> dict:
    if command["cmd"] == "load":
        before = counts(replicas)
        result = run_load(command["target"], REQUEST, concurrency=command.get("concurrency", 8),
                          requests=10**9, duration=command["seconds"], timeout=10,
                          authority=command.get("authority"))
        after = counts(replicas)
        served = {a: (after[a] - (before[a] or 0)) if after[a] is not None else None for a in replicas}
        return {"ok": len(result.latencies_s), "errors": dict(result.errors), "served": served,
                "p50_us": result.percentile_us(50), "p99_us": result.percentile_us(99)}
    if command["cmd"] == "infer":
        options = CHANNEL_OPTIONS + ([("grpc.default_authority", command["authority"])]
                                     if command.get("authority") else [])
        with grpc.insecure_channel(command["target"], options=options) as channel:
            try:
                pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(REQUEST, timeout=5)
                return {"code": "OK"}
            except grpc.RpcError as exc:
                return {"code": exc.code().name}
    if command["cmd"] == "envoy":
        try:
            return {"hosts": healthy_hosts(command["admin"])}
        except OSError as exc:
            return {"hosts": {}, "error": str(exc)}
    return {"error": f"unknown command {command['cmd']!r}"}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--replica", action="append", default=[], help="HOST:PORT of a replica, for its counters")
    args = p.parse_args()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(handle(json.loads(line), args.replica)), flush=True)


if __name__ == "__main__":
    main()
