"""Hostile requests: the decoder answers every malformed request with InvalidInput, never a crash.

Hypothesis builds ModelInferRequests from every family the hardening issue names:
negative, zero, huge and overflowing shapes, shape/byte mismatches, wrong
datatypes, NaN and Inf, duplicate inputs, strings where numbers belong, raw and
typed contents mixed up. The codec must either return arrays that match the
signature exactly or raise InvalidInput; a sample then goes through a real server,
which must answer each with a clean status and keep serving.
"""
from __future__ import annotations

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protos import inference_pb2 as pb
from protos import inference_pb2_grpc as pb_grpc
from serve.codec import Codec
from serve.config import TensorSpec
from serve.datatypes import NUMPY
from serve.errors import InvalidInput

SIGNATURE = (TensorSpec("x", "FP32", (1, 4)), TensorSpec("ids", "INT64", (1, -1)), TensorSpec("s", "BYTES", (1, 2)))
CODEC = Codec(SIGNATURE, (TensorSpec("y", "FP32", (1, 4)),))
DATATYPES = sorted(NUMPY) + ["", "FP8", "fp32", "STRING"]
DIMS = st.one_of(st.integers(-3, 6), st.sampled_from([2**31, 2**62, 2**63 - 1, -(2**63)]))


@st.composite
def tensors(draw):
    name = draw(st.sampled_from(["x", "ids", "s", "y", "", "x\x00"]))
    datatype = draw(st.sampled_from(DATATYPES))
    shape = draw(st.lists(DIMS, max_size=4))
    return name, datatype, shape


@st.composite
def requests(draw):
    request = pb.ModelInferRequest(model_name="m")
    specs = draw(st.lists(tensors(), max_size=4))
    use_raw = draw(st.booleans())
    for name, datatype, shape in specs:
        tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
        if use_raw:
            request.raw_input_contents.append(draw(st.binary(max_size=80)))
        else:
            kind = draw(st.sampled_from(["fp32_contents", "int64_contents", "bytes_contents", "int_contents"]))
            values = {
                "fp32_contents": st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=6),
                "int64_contents": st.lists(st.integers(-(2**63), 2**63 - 1), max_size=6),
                "int_contents": st.lists(st.integers(-(2**31), 2**31 - 1), max_size=6),
                "bytes_contents": st.lists(st.binary(max_size=8), max_size=6),
            }[kind]
            getattr(tensor.contents, kind).extend(draw(values))
    if use_raw and draw(st.booleans()):  # one raw entry too many or too few
        request.raw_input_contents.append(b"\0" * 4)
    return request


def _valid(arrays: dict[str, np.ndarray]) -> None:
    assert set(arrays) == {s.name for s in SIGNATURE}
    for spec in SIGNATURE:
        array = arrays[spec.name]
        assert array.ndim == len(spec.shape)
        assert all(d == s or s == -1 for d, s in zip(array.shape, spec.shape))
        assert all(d >= 0 for d in array.shape)
        if spec.datatype != "BYTES":
            assert array.dtype == NUMPY[spec.datatype]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_decoder_returns_valid_arrays_or_invalid_input(request) -> None:
    try:
        arrays = CODEC.decode(request)
    except InvalidInput as exc:
        assert str(exc)  # every refusal says why
        return
    _valid(arrays)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_as_a_bytes_tensor(raw) -> None:
    request = pb.ModelInferRequest(model_name="m")
    for spec in SIGNATURE:
        request.inputs.add(name=spec.name, datatype=spec.datatype, shape=[1, 2] if spec.name != "x" else [1, 4])
    request.raw_input_contents.extend([b"\0" * 16, b"\0" * 16, raw])
    try:
        arrays = CODEC.decode(request)
    except InvalidInput:
        return
    assert all(isinstance(v, str) for v in arrays["s"].ravel())


def test_overflowing_shape_product_is_refused_not_allocated() -> None:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    request.inputs.add(name="ids", datatype="INT64", shape=[1, 2**62])
    request.inputs.add(name="s", datatype="BYTES", shape=[1, 2])
    request.raw_input_contents.extend([b"\0" * 16, b"\0" * 16, b"\0" * 8])
    with pytest.raises(InvalidInput, match="ids"):
        CODEC.decode(request)


def test_huge_bytes_shape_is_refused_before_any_allocation() -> None:
    codec = Codec((TensorSpec("s", "BYTES", (1, -1)),), (TensorSpec("y", "BYTES", (1, -1)),))
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="s", datatype="BYTES", shape=[1, 2**40])
    request.raw_input_contents.append(b"\0\0\0\0")
    with pytest.raises(InvalidInput, match="cannot hold 1099511627776 BYTES elements"):
        codec.decode(request)


@pytest.mark.parametrize("seed", range(3))
def test_a_real_server_answers_hostile_requests_cleanly_and_keeps_serving(server, seed) -> None:
    """Through gRPC: statuses are INVALID_ARGUMENT or NOT_FOUND, never INTERNAL or a dead server."""
    rng = np.random.default_rng(seed)
    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(60):
            request = _random_request(rng)
            try:
                stub.ModelInfer(request, timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), exc
        assert stub.ServerLive(pb.ServerLiveRequest()).live
        good = pb.ModelInferRequest(model_name="two_outputs")
        for name in ("a", "b"):
            good.inputs.add(name=name, datatype="FP32", shape=[1, 4])
            good.raw_input_contents.append(np.ones(4, np.float32).tobytes())
        assert np.frombuffer(stub.ModelInfer(good).raw_output_contents[0], np.float32).tolist() == [2.0] * 4


def _random_request(rng) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=str(rng.choice(["two_outputs", "identity_bytes", "nope"])))
    for _ in range(int(rng.integers(0, 4))):
        shape = [int(v) for v in rng.choice([-1, 0, 1, 4, 2**40, 2**63 - 1], size=int(rng.integers(0, 3)))]
        request.inputs.add(name=str(rng.choice(["a", "b", "x", "zz"])), datatype=str(rng.choice(DATATYPES)),
                           shape=shape)
        request.raw_input_contents.append(rng.bytes(int(rng.integers(0, 40))))
    return request
