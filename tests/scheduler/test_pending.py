"""The bound on calls waiting in gRPC's core (ServerConfig.max_pending_rpcs), over real gRPC.

While the event loop is held (as when it is behind under overload), calls pile up
in the core, which takes no Python to refuse them: beyond the bound they are shed
there (the client sees CANCELLED), and the server's own accounting never sees them.
"""
from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import onnx

from protos import inference_pb2_grpc as pb_grpc
from serve.client import build_request
from serve.deploy import prepare
from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread
from tests.server.conftest import two_output_model

CALLS = 40
BOUND = 4


def _held_burst(root, bound: int | None) -> tuple[list[grpc.StatusCode], int, int]:
    """CALLS calls sent while the event loop is held: their codes, and what the server counted."""
    repo = ModelRepository(root)
    source = root / "src.onnx"
    onnx.save(two_output_model(), source)
    prepared = prepare([source], name="echo", backend="null")
    repo.add(prepared.config, prepared.model_bytes)
    x = np.ones((1, 4), np.float32)
    request = build_request("echo", {"a": x, "b": x})
    release, held = threading.Event(), threading.Event()
    with ServerThread(ServerConfig(repo=root, port=0, metrics_port=None, max_pending_rpcs=bound)) as server:
        with grpc.insecure_channel(server.address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            stub.ModelInfer(request)  # connected and warm
            server._loop.call_soon_threadsafe(lambda: (held.set(), release.wait(30)))  # the loop is behind
            assert held.wait(30)
            calls = [stub.ModelInfer.future(request, timeout=60) for _ in range(CALLS)]
            time.sleep(0.5)  # let them reach the server, where they wait in the core
            release.set()
            codes = []
            for call in calls:
                try:
                    call.result()
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as exc:
                    codes.append(exc.code())
        stats = server.server.registry.get("echo").stats
        return codes, stats.success_count - 1, stats.fail_count


def test_calls_beyond_the_bound_are_shed_in_the_core_before_any_python(tmp_path) -> None:
    codes, served, failed = _held_burst(tmp_path, BOUND)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.CANCELLED}, codes
    # At most BOUND waited in the core, plus the one call grpc.aio had already asked it for.
    assert codes.count(grpc.StatusCode.CANCELLED) >= CALLS - BOUND - 1
    assert served == codes.count(grpc.StatusCode.OK) and failed == 0  # the shed ones never reached Python


def test_without_a_bound_every_call_waits_and_is_served(tmp_path) -> None:
    codes, served, _ = _held_burst(tmp_path, None)
    assert codes == [grpc.StatusCode.OK] * CALLS and served == CALLS
