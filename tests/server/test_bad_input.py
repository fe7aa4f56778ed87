"""Every kind of bad request gets a precise status and message; the server keeps serving."""
from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from tests.server.conftest import digits_sample


def _request(client, model="digits", shape=(1, 64), datatype="FP32", name="pixels", data=None, **kw):
    inp = grpcclient.InferInput(name, list(shape), datatype)
    array = data if data is not None else np.zeros(shape, grpcclient.triton_to_np_dtype(datatype))
    inp.set_data_from_numpy(array)
    return client.infer(model, [inp], **kw)


def _error(fn) -> grpcclient.InferenceServerException:
    with pytest.raises(grpcclient.InferenceServerException) as info:
        fn()
    return info.value


@pytest.fixture(autouse=True)
def still_serving_afterwards(client):
    yield
    x, label = digits_sample(3)
    out = _request(client, data=x).as_numpy("probabilities")
    assert out.argmax() == label, "a good request failed after a bad one"


def test_unknown_model_is_not_found(client) -> None:
    err = _error(lambda: _request(client, model="nope"))
    assert err.status() == "StatusCode.NOT_FOUND"
    assert "unknown model 'nope'" in err.message() and "digits" in err.message()


def test_unknown_version_is_not_found(client) -> None:
    err = _error(lambda: _request(client, model_version="9"))
    assert err.status() == "StatusCode.NOT_FOUND" and "no version 9" in err.message()


def test_wrong_shape_names_the_tensor_and_the_expected_shape(client) -> None:
    err = _error(lambda: _request(client, shape=(1, 63)))
    assert err.status() == "StatusCode.INVALID_ARGUMENT"
    assert "'pixels'" in err.message() and "[1, 63]" in err.message() and "[1, 64]" in err.message()


def test_wrong_rank(client) -> None:
    err = _error(lambda: _request(client, shape=(64,)))
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "expected [1, 64]" in err.message()


def test_wrong_datatype(client) -> None:
    err = _error(lambda: _request(client, datatype="FP64"))
    assert err.status() == "StatusCode.INVALID_ARGUMENT"
    assert "datatype FP64, expected FP32" in err.message()


def test_extra_input_is_refused(client) -> None:
    a = grpcclient.InferInput("pixels", [1, 64], "FP32")
    a.set_data_from_numpy(np.zeros((1, 64), np.float32))
    b = grpcclient.InferInput("bogus", [1], "FP32")
    b.set_data_from_numpy(np.zeros(1, np.float32))
    err = _error(lambda: client.infer("digits", [a, b]))
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "unexpected input 'bogus'" in err.message()


def test_missing_input_is_refused(client) -> None:
    a = grpcclient.InferInput("a", [1, 4], "FP32")
    a.set_data_from_numpy(np.zeros((1, 4), np.float32))
    err = _error(lambda: client.infer("two_outputs", [a]))
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "missing input(s) b" in err.message()


def test_duplicate_input_is_refused(client) -> None:
    a = grpcclient.InferInput("a", [1, 4], "FP32")
    a.set_data_from_numpy(np.zeros((1, 4), np.float32))
    err = _error(lambda: client.infer("two_outputs", [a, a]))
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "more than once" in err.message()


def test_raw_byte_count_that_does_not_match_the_shape(server) -> None:
    import grpc

    from protos import inference_pb2 as pb
    from protos import inference_pb2_grpc as pb_grpc

    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="digits")
        request.inputs.add(name="pixels", datatype="FP32", shape=[1, 64])
        request.raw_input_contents.append(b"\0" * 255)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "255 bytes" in info.value.details() and "expected 256" in info.value.details()


def test_unknown_requested_output(client) -> None:
    err = _error(lambda: _request(client, outputs=[grpcclient.InferRequestedOutput("logits")]))
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "unknown requested output(s) logits" in err.message()


def test_oversized_message_is_resource_exhausted(client) -> None:
    big = np.zeros((1, 2_000_000), np.float32)  # 8 MB; the test server allows 4 MiB
    err = _error(lambda: _request(client, model="identity_fp32", name="x", shape=big.shape, data=big))
    assert err.status() == "StatusCode.RESOURCE_EXHAUSTED"


def test_bytes_that_are_not_utf8_text(client) -> None:
    x = np.array([[b"\xff\xfe"]], dtype=np.object_)
    err = _error(lambda: _request(client, model="identity_bytes", name="x", shape=(1, 1), datatype="BYTES", data=x))
    assert err.status() == "StatusCode.INVALID_ARGUMENT" and "not UTF-8" in err.message()
