"""A real bwserve on a free port, with small models built here, for tritonclient tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from models.convert.onnx_io import finalize
from serve.deploy import prepare
from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread

# Every ONNX element type the v2 protocol carries, as (v2 name, ONNX type).
IDENTITY_TYPES = {
    "BOOL": TensorProto.BOOL, "UINT8": TensorProto.UINT8, "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32, "UINT64": TensorProto.UINT64, "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16, "INT32": TensorProto.INT32, "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16, "FP32": TensorProto.FLOAT, "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def _model(nodes, inputs, outputs, name: str) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    onnx.checker.check_model(model)
    return finalize(model)


def identity_model(elem_type: int) -> onnx.ModelProto:
    """x -> y unchanged, shape [1, -1]: checks each datatype's round trip."""
    return _model([helper.make_node("Identity", ["x"], ["y"])],
                  [helper.make_tensor_value_info("x", elem_type, [1, "n"])],
                  [helper.make_tensor_value_info("y", elem_type, [1, "n"])], "identity")


def two_output_model() -> onnx.ModelProto:
    """a, b (FP32 [1, 4]) -> sum = a + b, diff = a - b: requested-output filtering."""
    t = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4])  # noqa: E731
    return _model([helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Sub", ["a", "b"], ["diff"])],
                  [t("a"), t("b")], [t("sum"), t("diff")], "two_outputs")


def add_model(repo: ModelRepository, model: onnx.ModelProto | Path, name: str, **kwargs) -> int:
    """Write a model version through the same path `serve deploy` uses."""
    path = model
    if isinstance(model, onnx.ModelProto):
        path = repo.root / f".src-{name}.onnx"
        repo.root.mkdir(parents=True, exist_ok=True)
        onnx.save(model, path)
    prepared = prepare([Path(path)], name=name, **kwargs)
    return repo.add(prepared.config, prepared.model_bytes)


@pytest.fixture(scope="session")
def digits_model() -> onnx.ModelProto:
    from models.examples import digits

    return digits.train().model


@pytest.fixture(scope="module")
def server(tmp_path_factory, digits_model):
    repo = ModelRepository(tmp_path_factory.mktemp("repo"))
    add_model(repo, digits_model, "digits")
    add_model(repo, two_output_model(), "two_outputs")
    for datatype, elem_type in IDENTITY_TYPES.items():
        add_model(repo, identity_model(elem_type), f"identity_{datatype.lower()}")
    handle = ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None,
                                       max_message_bytes=4 * 1024 * 1024))
    handle.repo = repo
    yield handle
    handle.stop()


@pytest.fixture()
def client(server):
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(server.address) as c:
        yield c


def digits_sample(index: int = 0) -> tuple[np.ndarray, int]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data[index:index + 1].astype(np.float32), int(d.target[index])
