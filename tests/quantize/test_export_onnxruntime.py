"""Quantised models are standard ONNX that onnxruntime runs, computing exactly with the
weights numpy dequantises."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.quantize import codes
from models.quantize.export import METADATA_FORMATS, STORAGE, apply_formats, quantized_weight
from models.quantize.formats import Family, Format
from models.quantize.onnx_io import find_weights, prepare, run, session

BLOCK_FORMATS = [f for f in Format if f.spec.family in (Family.BFP, Family.MX)]
PER_LAYER = BLOCK_FORMATS + [Format.FP16, Format.FP32]


def small_model(rng: np.random.Generator) -> onnx.ModelProto:
    """Conv (3->4 channels, 3x3, 27-long reduction) -> flatten -> Gemm(transB) -> MatMul."""
    conv_w = rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    gemm_w = rng.normal(0, 0.2, (6, 4 * 4 * 4)).astype(np.float32)  # transB: [N, K]
    mm_w = rng.normal(0, 1.0, (6, 3)).astype(np.float32) * np.float32(100)  # far from 1: scales matter
    nodes = [
        helper.make_node("Conv", ["x", "conv_w"], ["c"], pads=[0, 0, 0, 0]),
        helper.make_node("Flatten", ["c"], ["f"]),
        helper.make_node("Gemm", ["f", "gemm_w"], ["g"], transB=1),
        helper.make_node("MatMul", ["g", "mm_w"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(a, n) for a, n in ((conv_w, "conv_w"), (gemm_w, "gemm_w"), (mm_w, "mm_w"))],
    )
    return prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))


def numpy_forward(x: np.ndarray, conv_w: np.ndarray, gemm_w: np.ndarray, mm_w: np.ndarray) -> np.ndarray:
    """The small model in float64 numpy: an independent reference for onnxruntime."""
    windows = np.lib.stride_tricks.sliding_window_view(x[0], (3, 3), axis=(1, 2))  # [3, 4, 4, 3, 3]
    conv = np.einsum("cyxkl,ockl->oyx", windows, conv_w.astype(np.float64))
    return (conv.reshape(1, -1) @ gemm_w.T.astype(np.float64)) @ mm_w.astype(np.float64)


def test_finds_the_three_weights_with_their_reduction_axes() -> None:
    model = small_model(np.random.default_rng(0))
    refs = {r.name: r for r in find_weights(model)}
    assert refs["conv_w"].matrix_shape == (4, 27) and refs["conv_w"].block_axis == 1
    assert refs["gemm_w"].block_axis == 1  # transB: reduction along the rows' length
    assert refs["mm_w"].block_axis == 0


@pytest.mark.parametrize("fmt", PER_LAYER, ids=lambda f: f.value)
def test_onnxruntime_computes_with_numpy_dequantised_weights(fmt: Format) -> None:
    rng = np.random.default_rng(1)
    model = small_model(rng)
    refs = find_weights(model)
    quantised = apply_formats(model, refs, {r.name: fmt for r in refs})
    onnx.checker.check_model(quantised, full_check=True)
    assert quantised.ir_version == 10
    assert json.loads({p.key: p.value for p in quantised.metadata_props}[METADATA_FORMATS])["mm_w"] == fmt.value
    if fmt.spec.element is not None:
        dq = [n for n in quantised.graph.node if n.op_type == "DequantizeLinear"]
        assert len(dq) == 3 and all(fmt.value in n.doc_string for n in dq)
        narrow = {t.name: t.data_type for t in quantised.graph.initializer}
        assert narrow["mm_w__q"] == STORAGE[fmt.spec.element]
    x = rng.uniform(0, 4, (5, 1, 3, 6, 6)).astype(np.float32)
    got = run(session(quantised), x)
    weights = {r.name: quantized_weight(numpy_helper.to_array(t), r, fmt)
               for r in refs for t in model.graph.initializer if t.name == r.name}
    want = np.concatenate([numpy_forward(s, weights["conv_w"], weights["gemm_w"], weights["mm_w"]) for s in x])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    if fmt is not Format.FP32:  # and the weights did change: the test can tell formats apart
        plain = np.concatenate([numpy_forward(s, *(numpy_helper.to_array(t) for t in model.graph.initializer)) for s in x])
        assert not np.allclose(plain, want, rtol=1e-7, atol=0)


@pytest.mark.parametrize("fmt", BLOCK_FORMATS, ids=lambda f: f.value)
def test_every_element_code_survives_onnxruntime(fmt: Format) -> None:
    """All finite values of the element type, stored in the ONNX type, come back exactly."""
    element = fmt.spec.element
    values = codes.decode(codes.all_codes(element), element)
    values = values[np.isfinite(values)]
    b = fmt.spec.block_size
    # Put the max in every block so each block's scale is 2**0 and elements are the values.
    column = []
    for start in range(0, len(values), b - 1):
        column += [element.spec.max_normal] + list(values[start : start + b - 1])
    column += [0.0] * (-len(column) % b)
    weight = np.array(column, dtype=np.float32)[:, None]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "codes",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, len(column)])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, list(weight.shape))],
        [numpy_helper.from_array(weight, "w")],
    )
    model = prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))
    quantised = apply_formats(model, find_weights(model), {"w": fmt})
    sess = session(quantised)
    got = sess.run(["w"], {"x": np.zeros((1, len(column)), np.float32)})[0]
    np.testing.assert_array_equal(got, weight)
