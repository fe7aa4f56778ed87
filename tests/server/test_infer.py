"""Inference through tritonclient against a real server: results, datatypes, outputs, stats."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient

from tests.server.conftest import IDENTITY_TYPES, digits_sample


def _infer(client, model, arrays: dict[str, np.ndarray], datatypes: dict[str, str] | None = None,
           outputs=None, **kw):
    inputs = []
    for name, array in arrays.items():
        datatype = (datatypes or {}).get(name) or grpcclient.np_to_triton_dtype(array.dtype)
        inp = grpcclient.InferInput(name, list(array.shape), datatype)
        inp.set_data_from_numpy(array)
        inputs.append(inp)
    requested = [grpcclient.InferRequestedOutput(n) for n in outputs] if outputs else None
    return client.infer(model, inputs, outputs=requested, **kw)


def test_server_metadata_lists_extensions_perf_analyzer_needs(client) -> None:
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name == "bwserve"
    assert {"statistics", "model_repository", "model_configuration"} <= set(meta.extensions)


def test_model_metadata_and_config_describe_the_signature(client) -> None:
    meta = client.get_model_metadata("digits")
    assert meta.name == "digits" and list(meta.versions) == ["1"]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("pixels", "FP32", [1, 64])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [("probabilities", "FP32", [1, 10])]
    config = client.get_model_config("digits").config
    assert config.name == "digits" and config.max_batch_size == 0
    assert [i.name for i in config.input] == ["pixels"] and list(config.input[0].dims) == [1, 64]
    assert config.instance_group[0].count == 1
    assert client.is_model_ready("digits") and not client.is_model_ready("no_such_model")


def test_digits_match_onnxruntime_and_classify(client, digits_model) -> None:
    session = ort.InferenceSession(digits_model.SerializeToString())
    correct = 0
    for i in range(40):
        x, label = digits_sample(i)
        got = _infer(client, "digits", {"pixels": x}).as_numpy("probabilities")
        want = session.run(None, {"pixels": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        correct += int(got.argmax() == label)
    assert correct >= 36, f"only {correct}/40 digits right"


def test_request_id_comes_back(client) -> None:
    x, _ = digits_sample(0)
    for request_id in ("", "req-17", "\u00e9t\u00e9" * 40):
        response = _infer(client, "digits", {"pixels": x}, request_id=request_id).get_response()
        assert response.id == request_id and response.model_name == "digits" and response.model_version == "1"


@pytest.mark.parametrize("datatype", sorted(IDENTITY_TYPES))
def test_every_datatype_round_trips_through_raw_contents(client, datatype) -> None:
    rng = np.random.default_rng(7)
    if datatype == "BYTES":
        x = np.array([[b"brain", b"wave", b"", "\u00e9t\u00e9".encode()]], dtype=np.object_)
    elif datatype == "BOOL":
        x = rng.random((1, 5)) < 0.5
    elif datatype.startswith("FP"):
        x = rng.standard_normal((1, 5)).astype(grpcclient.triton_to_np_dtype(datatype))
    else:
        dtype = np.dtype(grpcclient.triton_to_np_dtype(datatype))
        info = np.iinfo(dtype)
        x = np.array([[info.min, info.max, 0, 1, info.max // 3]], dtype=dtype)
    got = _infer(client, f"identity_{datatype.lower()}", {"x": x}, {"x": datatype}).as_numpy("y")
    assert got.dtype == x.dtype and got.shape == x.shape
    assert (got == x).all()


def test_requested_outputs_are_filtered_and_ordered(client) -> None:
    a = np.arange(4, dtype=np.float32)[None]
    b = np.full((1, 4), 10, np.float32)
    only_diff = _infer(client, "two_outputs", {"a": a, "b": b}, outputs=["diff"])
    assert only_diff.as_numpy("sum") is None
    np.testing.assert_array_equal(only_diff.as_numpy("diff"), a - b)
    both = _infer(client, "two_outputs", {"a": a, "b": b})
    np.testing.assert_array_equal(both.as_numpy("sum"), a + b)
    np.testing.assert_array_equal(both.as_numpy("diff"), a - b)


def test_statistics_count_exactly_what_was_sent(client) -> None:
    def stats():
        s = client.get_inference_statistics("two_outputs").model_stats[0]
        return s.inference_count, s.inference_stats.success.count, s.inference_stats.fail.count

    before = stats()
    a = np.ones((1, 4), np.float32)
    for _ in range(7):
        _infer(client, "two_outputs", {"a": a, "b": a})
    with pytest.raises(grpcclient.InferenceServerException):
        _infer(client, "two_outputs", {"a": a})  # missing input
    after = stats()
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == (7, 7, 1)
    s = client.get_inference_statistics("two_outputs").model_stats[0].inference_stats
    assert s.queue.count == s.compute_input.count == s.compute_infer.count == s.compute_output.count == s.success.count
    assert s.compute_infer.ns > 0


def test_typed_contents_are_accepted(server) -> None:
    """Clients that send InferTensorContents instead of raw bytes get the same answer."""
    import grpc

    from protos import inference_pb2 as pb
    from protos import inference_pb2_grpc as pb_grpc

    with grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name="two_outputs")
        for name, values in (("a", [1, 2, 3, 4]), ("b", [0.5, 0.5, 0.5, 0.5])):
            tensor = request.inputs.add(name=name, datatype="FP32", shape=[1, 4])
            tensor.contents.fp32_contents.extend(values)
        response = stub.ModelInfer(request)
    sums = np.frombuffer(response.raw_output_contents[0], np.float32)
    np.testing.assert_array_equal(sums, [1.5, 2.5, 3.5, 4.5])
