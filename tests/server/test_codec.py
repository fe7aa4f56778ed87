"""The response bytes the codec joins by hand decode to exactly the message protobuf builds."""
from __future__ import annotations

import numpy as np
import pytest

from protos import inference_pb2 as pb
from serve.codec import Codec
from serve.config import TensorSpec

# Output sizes whose length prefixes take one, two and three varint bytes.
SIGNATURE = (TensorSpec("small", "FP32", (1, 10)), TensorSpec("mid", "INT64", (2, 16)),
             TensorSpec("big", "FP16", (1, 40000)))


def _built(outputs: dict[str, np.ndarray], request_id: str) -> pb.ModelInferResponse:
    """The response field by field, as the generic path and any other server would build it."""
    response = pb.ModelInferResponse(model_name="m", model_version="3", id=request_id)
    for spec in SIGNATURE:
        response.outputs.add(name=spec.name, datatype=spec.datatype, shape=spec.shape)
        response.raw_output_contents.append(outputs[spec.name].tobytes())
    return response


@pytest.mark.parametrize("request_id", ["", "r-1", "\u00e9t\u00e9" * 40])  # 240 UTF-8 bytes: 2-byte length
def test_fixed_signature_bytes_equal_the_built_message(request_id: str) -> None:
    rng = np.random.default_rng(0)
    outputs = {"small": rng.random((1, 10), dtype=np.float32),
               "mid": rng.integers(-2**62, 2**62, (2, 16)),
               "big": rng.random((1, 40000)).astype(np.float16)}
    codec = Codec((TensorSpec("x", "FP32", (1, 4)),), SIGNATURE, "m", "3")
    data = codec.encode(outputs, None, request_id)
    assert pb.ModelInferResponse.FromString(data) == _built(outputs, request_id)


def test_outputs_off_the_signature_take_the_generic_path() -> None:
    """A dtype other than the signature's is sent as what it is, not under the template's header."""
    codec = Codec((TensorSpec("x", "FP32", (1, 4)),), (TensorSpec("y", "FP32", (1, 2)),), "m", "1")
    response = pb.ModelInferResponse.FromString(codec.encode({"y": np.array([[1, 2]], dtype=np.int32)}, None))
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [("y", "INT32", [1, 2])]
    assert np.frombuffer(response.raw_output_contents[0], np.int32).tolist() == [1, 2]
