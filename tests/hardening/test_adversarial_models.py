"""Hostile model files are refused at deploy with a clear error, before anything is written."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from serve.deploy import prepare
from serve.errors import InvalidModel
from tests.old_exporter import mnist_folder


def _matmul_model(weight: TensorProto, width: int = 4) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", weight.name], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model


def test_external_data_pointing_outside_the_model_folder(tmp_path: Path) -> None:
    (tmp_path / "secret.bin").write_bytes(np.arange(16, dtype=np.float32).tobytes())
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", "64")):
        weight.external_data.add(key=key, value=value)
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / "evil.onnx"
    onnx.save(_matmul_model(weight), path)
    with pytest.raises(InvalidModel, match="points outside the directory"):
        prepare([path])


def test_huge_declared_tensor_is_refused_without_allocating_it(tmp_path: Path) -> None:
    big = TensorProto(name="big", data_type=TensorProto.FLOAT, dims=[1_000_000, 1_000_000], raw_data=b"\0" * 16)
    path = tmp_path / "huge.onnx"
    onnx.save(_matmul_model(big, width=1_000_000), path)
    with pytest.raises(InvalidModel, match="4000000000000 bytes required"):
        prepare([path])


@pytest.mark.parametrize("kind", ["cntk", "made-here"])
def test_truncated_real_model(tmp_path: Path, kind: str, tmp_path_factory) -> None:
    data = (mnist_folder(kind, tmp_path_factory) / "model.onnx").read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidModel, match="truncated.onnx"):
        prepare([path])
