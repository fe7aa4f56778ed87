"""SIGTERM on a real `serve start` process: stop accepting, drain what was accepted, exit 0."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest

from protos import inference_pb2_grpc as pb_grpc
from serve.client import build_request
from serve.deploy import prepare
from serve.repository import ModelRepository
from tests.server.conftest import two_output_model

ROOT = Path(__file__).resolve().parents[2]
SLEEP_MS = 300
IN_FLIGHT = 4  # one running, three queued when the signal comes


def _start(repo: Path, event_loop: str = "uvloop") -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "serve.cli", "start", "--repo", str(repo), "--port", "0", "--metrics-port", "-1",
         "--event-loop", event_loop],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:  # the CLI prints its address once every model is loaded
        match = re.search(r"serving on (\S+?:\d+).*event loop: (\w+)", line)
        if match:
            assert match.group(2) == event_loop, line
            return proc, match.group(1)
    raise AssertionError(f"server exited ({proc.wait()}) before serving")


def _serve_slow_model(tmp_path: Path, sleep_ms: float, event_loop: str = "uvloop"):
    """`serve start` on a model whose every run sleeps ``sleep_ms``; (process, address, request)."""
    source = tmp_path / "src.onnx"
    onnx.save(two_output_model(), source)
    prepared = prepare([source], name="slow", backend="null", backend_options={"sleep_ms": str(sleep_ms)})
    ModelRepository(tmp_path / "repo").add(prepared.config.replace(warmup_runs=0), prepared.model_bytes)
    proc, address = _start(tmp_path / "repo", event_loop)
    x = np.ones((1, 4), np.float32)
    return proc, address, build_request("slow", {"a": x, "b": x})


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_sigterm_drains_in_flight_requests_then_exits(tmp_path: Path, event_loop: str) -> None:
    proc, address, request = _serve_slow_model(tmp_path, SLEEP_MS, event_loop)
    try:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            stub.ModelInfer(request, timeout=30)  # connected and served once
            calls = [stub.ModelInfer.future(request, timeout=30) for _ in range(IN_FLIGHT)]
            time.sleep(SLEEP_MS / 2e3)  # they reach the server (the first is running) before the signal
            proc.send_signal(signal.SIGTERM)
            # Every request accepted before the signal is answered, none cancelled or dropped.
            for call in calls:
                assert call.result().model_name == "slow"
        assert proc.wait(timeout=30) == 0
        output = proc.stdout.read()
        assert "stopping: draining" in output, output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_after_sigterm_new_requests_are_refused_not_queued(tmp_path: Path) -> None:
    proc, address, request = _serve_slow_model(tmp_path, 1000)
    try:
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            running = stub.ModelInfer.future(request, timeout=30)
            time.sleep(0.3)
            proc.send_signal(signal.SIGTERM)
            from grpc_health.v1 import health_pb2, health_pb2_grpc

            health = health_pb2_grpc.HealthStub(channel)
            # Draining is visible: health goes NOT_SERVING while the running request finishes.
            status = None
            for _ in range(200):
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
                except grpc.RpcError:
                    break  # the server already stopped taking RPCs: refused as well
                if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    break
                time.sleep(0.005)
            time.sleep(0.1)  # past NOT_SERVING the server stops taking RPCs; the running one still drains
            try:
                stub.ModelInfer(request, timeout=30)
                late = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                late = exc.code()
            assert late is grpc.StatusCode.UNAVAILABLE
            assert running.result().model_name == "slow"
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
