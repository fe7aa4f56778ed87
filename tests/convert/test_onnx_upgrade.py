"""ONNX in, any age: the CNTK-exported mnist-8 is upgraded and still matches its test sets."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from models.convert import TARGET_IR_VERSION, TARGET_OPSET, ConversionError, convert, save
from models.convert.cleanup import available_tools
from models.convert.onnx_io import load, main_opset
from models.convert.onnx_upgrade import QUIRK_AUTO_PAD, QUIRK_INITIALIZER_INPUTS

from tests.old_exporter import mnist_folder, reference_sets

from ._util import run_onnx, shared_model


@pytest.mark.parametrize("kind", ["cntk", "made-here"])
@pytest.mark.parametrize("tool", available_tools())
def test_cntk_mnist_upgraded_matches_its_test_sets(tool, kind, tmp_path_factory):
    """CNTK's own export, and one written alike here (tests/old_exporter.py): same quirks."""
    folder = mnist_folder(kind, tmp_path_factory)
    original = onnx.load(str(folder / "model.onnx"))
    assert main_opset(original) == 8 and original.ir_version == 3

    result = convert(folder / "model.onnx", cleanup=tool)
    model = result.model
    assert main_opset(model) == TARGET_OPSET
    assert model.ir_version == TARGET_IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    # The weights are no longer advertised as inputs: one image in, logits out.
    assert [i.name for i in model.graph.input] == ["Input3"]
    assert QUIRK_INITIALIZER_INPUTS in result.summary.notes
    assert QUIRK_AUTO_PAD in result.summary.notes
    # Clean-up folded the weight Reshape and fused the bias Adds into Conv/Gemm.
    assert "Add" not in result.summary.op_counts
    assert result.summary.op_counts["Conv"] == 2
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert attrs.get("auto_pad", b"NOTSET") == b"NOTSET", node.name
    for x, y in reference_sets(folder):
        (got,) = run_onnx(model, {"Input3": x})
        np.testing.assert_allclose(got, y, rtol=1e-3, atol=1e-4)


def test_summary_of_cntk_mnist():
    summary = convert(shared_model("cntk_mnist", "model.onnx")).summary
    assert summary.framework == "onnx"
    assert summary.opset == TARGET_OPSET
    assert [(s.name, s.shape, s.dtype) for s in summary.inputs] == [("Input3", (1, 1, 28, 28), "float32")]
    assert [s.shape for s in summary.outputs] == [(1, 10)]
    # 8*1*5*5 + 8 + 16*8*5*5 + 16 + 256*10 + 10: the model's weights, counted once.
    assert summary.parameters == 200 + 8 + 3200 + 16 + 2560 + 10
    assert summary.host_ops == ()


def test_written_file_has_the_project_ir_version(tmp_path):
    result = convert(shared_model("cntk_mnist", "model.onnx"))
    out = tmp_path / "m.onnx"
    result.model.ir_version = 14  # what onnx 1.23 would stamp
    save(result.model, out)
    assert onnx.load(str(out)).ir_version == TARGET_IR_VERSION


def test_corrupt_onnx_file_is_a_conversion_error(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x03\x12\xff\xff not protobuf")
    with pytest.raises(ConversionError, match="broken.onnx"):
        load(bad)
    with pytest.raises(ConversionError, match="broken.onnx"):
        convert(bad)


def test_invalid_graph_names_the_file(tmp_path):
    # A node reading a value nobody produces: the checker must reject it, by file name.
    node = helper.make_node("Relu", ["nowhere"], ["y"])
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "dangling.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ConversionError, match="dangling.onnx"):
        convert(path)


def test_batchnorm_is_folded_into_conv(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    scale, bias, mean = (rng.normal(size=4).astype(np.float32) for _ in range(3))
    var = rng.uniform(0.5, 2, size=4).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(w, "w"), (scale, "s"), (bias, "b"), (mean, "m"), (var, "v")]]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"], epsilon=1e-5),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 8, 8])],
        initializer=inits,
    )
    # An opset-9 model, as an old exporter would write it.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 4
    path = tmp_path / "bn.onnx"
    onnx.save(model, str(path))
    x = rng.normal(size=(1, 3, 8, 8)).astype(np.float32)
    (want,) = run_onnx(model, {"x": x})
    for tool in available_tools():
        result = convert(path, cleanup=tool)
        assert "BatchNormalization" not in result.summary.op_counts, tool
        (got,) = run_onnx(result.model, {"x": x})
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
