"""A model folder laid out like ``../shared/models/cntk_mnist``, made here.

Tests that use the CNTK-exported MNIST model also run on this one, so that a clone
without ``../shared`` (anyone outside the team) still covers the same code path: an
ONNX file as an old exporter writes it (opset 8, IR version 3, every weight also a
graph input, ``auto_pad=SAME_UPPER`` convolutions, bias ``Add`` nodes), conv-relu-pool
twice then a dense layer on a 1x1x28x28 image, and ``test_data_set_{0,1,2}`` holding
``input_0.pb``/``output_0.pb`` TensorProto files. Its reference outputs come from
onnxruntime on the file as written, before bwserve upgrades or cleans anything.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

SHARED_MODELS = Path(__file__).resolve().parents[1].parent / "shared" / "models"
CNTK_MNIST = SHARED_MODELS / "cntk_mnist"
INPUT = "Input3"
TEST_SETS = 3


def old_exporter_model(seed: int = 0) -> onnx.ModelProto:
    """mnist-8's shape and quirks with random weights (scaled so the logits stay O(1))."""
    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int, fan_in: int) -> TensorProto:
        return numpy_helper.from_array((rng.normal(size=shape) / np.sqrt(fan_in)).astype(np.float32), name)

    inits = [weight("w1", 8, 1, 5, 5, fan_in=25), weight("b1", 8, 1, 1, fan_in=1),
             weight("w2", 16, 8, 5, 5, fan_in=200), weight("b2", 16, 1, 1, fan_in=1),
             numpy_helper.from_array(np.array([1, 256], np.int64), "flat"),
             weight("w3", 256, 10, fan_in=256), weight("b3", 1, 10, fan_in=1)]
    nodes = [
        helper.make_node("Conv", [INPUT, "w1"], ["c1"], kernel_shape=[5, 5], auto_pad="SAME_UPPER"),
        helper.make_node("Add", ["c1", "b1"], ["a1"]),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], kernel_shape=[5, 5], auto_pad="SAME_UPPER"),
        helper.make_node("Add", ["c2", "b2"], ["a2"]),
        helper.make_node("Relu", ["a2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[3, 3], strides=[3, 3]),
        helper.make_node("Reshape", ["p2", "flat"], ["f"]),
        helper.make_node("MatMul", ["f", "w3"], ["m"]),
        helper.make_node("Add", ["m", "b3"], ["logits"]),
    ]
    # IR 3 requires every initializer to be a graph input too (CNTK's quirk, later dropped).
    inputs = [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, 1, 28, 28])]
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    graph = helper.make_graph(nodes, "old_exporter_cnn", inputs,
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, producer_name="bwserve tests (old exporter)",
                              opset_imports=[helper.make_opsetid("", 8)])
    model.ir_version = 3
    return model


def write_old_exporter_folder(folder: Path, seed: int = 0) -> Path:
    """Write model.onnx and its test sets into ``folder`` (cntk_mnist's layout); returns it."""
    import onnxruntime as ort

    model = old_exporter_model(seed)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed + 1)
    for index in range(TEST_SETS):
        x = rng.uniform(0, 255, size=(1, 1, 28, 28)).astype(np.float32)
        (y,) = session.run(None, {INPUT: x})
        data = folder / f"test_data_set_{index}"
        data.mkdir(exist_ok=True)
        onnx.save_tensor(numpy_helper.from_array(x), data / "input_0.pb")
        onnx.save_tensor(numpy_helper.from_array(y), data / "output_0.pb")
    return folder


def mnist_folder(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``kind`` "cntk" (../shared's, skipped where it is not) or "made-here" (this module's)."""
    if kind == "cntk":
        if not CNTK_MNIST.is_dir():
            pytest.skip(f"{CNTK_MNIST} is not beside the checkout (CI has it); 'made-here' runs the same test")
        return CNTK_MNIST
    return write_old_exporter_folder(tmp_path_factory.mktemp("old_exporter"))


def reference_sets(folder: Path):
    """(input, expected output) arrays of the folder's test sets."""
    for index in range(TEST_SETS):
        data = folder / f"test_data_set_{index}"
        yield (numpy_helper.to_array(onnx.load_tensor(str(data / "input_0.pb"))),
               numpy_helper.to_array(onnx.load_tensor(str(data / "output_0.pb"))))
