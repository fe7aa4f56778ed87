"""Admission control through a real server: status codes and messages a client sees."""
from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from protos import inference_pb2_grpc as pb_grpc
from serve.client import build_request
from serve.deploy import prepare
from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread
from tests.server.conftest import two_output_model

SLEEP_MS = 1000  # one request's service time on the null backend
SLO_MS = 1800  # one service fits in its 75% (1350 ms), two do not


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    repo = ModelRepository(root)
    source = root / "src.onnx"
    import onnx

    onnx.save(two_output_model(), source)
    prepared = prepare([source], name="slow", backend="null", slo_ms=SLO_MS,
                       backend_options={"sleep_ms": str(SLEEP_MS)})
    # Two warm-up runs: the first is ignored as cold, the second primes the estimate.
    repo.add(prepared.config.replace(warmup_runs=2), prepared.model_bytes)
    with ServerThread(ServerConfig(repo=root, port=0, metrics_port=None)) as handle:
        yield handle


@pytest.fixture()
def stub(server):
    with grpc.insecure_channel(server.address) as channel:  # no retries: see every status
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _request():
    x = np.ones((1, 4), np.float32)
    return build_request("slow", {"a": x, "b": x})


def _undecodable():
    request = _request()
    request.raw_input_contents[0] = b"\0" * 3  # not 4 float32s: decode would refuse it
    return request


@pytest.mark.parametrize("second", [_request, _undecodable])
def test_a_second_request_that_cannot_meet_the_slo_is_refused_at_once(stub, second) -> None:
    # An undecodable one too: the door refuses before anything decodes the request.
    first = stub.ModelInfer.future(_request())
    time.sleep(0.05)  # let it reach the server; whether it has started does not change the verdict
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(second())
    # Only the admission check words it so: a request that had waited would say otherwise.
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "would finish in" in info.value.details() and "deadline allows" in info.value.details()
    first.result()  # the admitted one is served


def test_the_client_deadline_overrides_the_slo(stub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(_request(), timeout=SLEEP_MS / 2e3)  # shorter than one service
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.ModelInfer(_request(), timeout=30).model_name == "slow"



def test_an_undecodable_request_to_an_idle_model_is_invalid(stub) -> None:
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(_undecodable(), timeout=30)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
