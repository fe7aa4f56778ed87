"""The client host of the multi-host tests: runs load and reads the replicas' counters.

Runs inside the client's namespace (only from there are the replicas reachable) and
takes one JSON command per line on stdin, answering one JSON line on stdout:

- ``{"cmd": "load", "target": T, "seconds": S, "concurrency": C, "authority": A?, "health_check": H?}``:
  closed-loop load (serve/bench.py's loop) on a channel kept open across commands,
  as a long-running client keeps it, with the shipped channel options (round_robin,
  retry on UNAVAILABLE, health checking); answers ok, errors by status code, and how
  many inferences each replica counted meanwhile.
- ``{"cmd": "infer", "target": T, "authority": A?}``: one request; answers its status code.
- ``{"cmd": "envoy", "admin": URL}``: Envoy's view of which replicas are healthy.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys

import grpc
import numpy as np

from protos import inference_pb2 as pb
from protos import inference_pb2_grpc as pb_grpc
from serve.bench import _closed
from serve.client import build_request, channel_options
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


class Driver:
    def __init__(self, replicas: list[str]) -> None:
        self.replicas = replicas
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)  # grpc.aio channels bind to the current loop
        self.channels: dict[tuple[str, str | None], grpc.aio.Channel] = {}

    def stub(self, command: dict):
        key = (command["target"], command.get("authority"), command.get("health_check", False))
        if key not in self.channels:
            self.channels[key] = grpc.aio.insecure_channel(key[0], options=channel_options(*key[1:]))
        return pb_grpc.GRPCInferenceServiceStub(self.channels[key])

    def counts(self) -> dict[str, int | None]:
        return {address: inference_count(address) for address in self.replicas}

    def handle(self, command: dict) -> dict:
        if command["cmd"] == "load":
            before = self.counts()
            stub = self.stub(command)
            result = self.loop.run_until_complete(
                _closed(stub, REQUEST, command.get("concurrency", 8), 10**9, command["seconds"], 10))
            after = self.counts()
            served = {a: (after[a] - (before[a] or 0)) if after[a] is not None else None for a in self.replicas}
            return {"ok": len(result.latencies_s), "errors": dict(result.errors), "served": served}
        if command["cmd"] == "infer":
            stub = self.stub(command)
            try:
                self.loop.run_until_complete(stub.ModelInfer(REQUEST, timeout=5))
                return {"code": "OK"}
            except grpc.aio.AioRpcError as exc:
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
    driver = Driver(args.replica)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(driver.handle(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
