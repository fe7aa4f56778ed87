"""Compiled programs against onnxruntime, op by op, at the widest setting (16-bit mantissas).

Tolerance: an operand of the matrix unit is off by at most 2**-15 of its block's
maximum, so a product is within ~1e-4 of its output's scale (``close``); vector ops
are fp32 like onnxruntime's.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from backends.base import ModelLoadFailed
from backends.fpga import isa
from models.convert.onnx_io import finalize
from tests.fpga.conftest import fpga, make_model, ort_run


def close(got, want, scale=1e-4):
    np.testing.assert_allclose(got, want, rtol=scale, atol=scale * max(1.0, float(np.abs(want).max())))


def check(model, feeds, **options):
    backend = fpga(model, **options)
    got = backend.run(feeds)
    for (name, value), want in zip(got.items(), ort_run(model, feeds)):
        assert value.shape == want.shape, name
        close(value, want)
    return backend


def ops(backend, kind) -> list:
    return [i for i in backend.program.body if isinstance(i, kind)]


CONVS = {
    "plain": dict(kernel_shape=[3, 3]),
    "stride_pad_asym": dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 2, 1]),
    "dilated_grouped": dict(kernel_shape=[3, 3], dilations=[2, 2], group=2, pads=[2, 2, 2, 2]),
    "depthwise": dict(kernel_shape=[3, 3], group=4, pads=[1, 1, 1, 1]),
    "same_upper": dict(kernel_shape=[4, 4], strides=[2, 2], auto_pad="SAME_UPPER"),
}


@pytest.mark.parametrize("name", CONVS)
@pytest.mark.parametrize("array", ["16x16", "8x8"])
def test_conv_with_folded_batchnorm(name, array, rng):
    attrs = CONVS[name]
    group = attrs.get("group", 1)
    cin, cout = 4, 8 if group != 4 else 4
    w = rng.standard_normal((cout, cin // group, *attrs["kernel_shape"])).astype(np.float32)
    bn = [rng.uniform(0.5, 2, cout), rng.standard_normal(cout), rng.standard_normal(cout), rng.uniform(0.5, 2, cout)]
    inits = {"w": w, "b": rng.standard_normal(cout).astype(np.float32),
             **{n: v.astype(np.float32) for n, v in zip(("s", "beta", "mean", "var"), bn)}}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs),
             helper.make_node("BatchNormalization", ["c", "s", "beta", "mean", "var"], ["y"])]
    model = make_model(nodes, {"x": [1, cin, 11, 10]}, {"y": None}, inits)
    backend = check(model, {"x": rng.standard_normal((1, cin, 11, 10)).astype(np.float32)}, array=array)
    assert len(ops(backend, isa.MatMul)) == 1 and not ops(backend, isa.Unary)
    assert [b.kind for b in ops(backend, isa.Binary)] == ["add"]  # BN folded: one bias add


def test_conv1d_and_dynamic_weights(rng):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], strides=[2], pads=[1, 1])]
    model = make_model(nodes, {"x": [1, 3, 20], "w": [5, 3, 3]}, {"y": None})
    backend = check(model, {"x": rng.standard_normal((1, 3, 20)).astype(np.float32),
                            "w": rng.standard_normal((5, 3, 3)).astype(np.float32)})
    assert ops(backend, isa.MatMul)[0].wsrc is not None


@pytest.mark.parametrize("ta,tb,alpha,beta", [(0, 0, 1.0, 1.0), (1, 1, 0.5, 2.0), (0, 1, 1.0, 0.0)])
def test_gemm(ta, tb, alpha, beta, rng):
    a = rng.standard_normal((3, 40) if not ta else (40, 3)).astype(np.float32)
    b = rng.standard_normal((40, 20) if not tb else (20, 40)).astype(np.float32)
    c = rng.standard_normal((20,)).astype(np.float32)
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transA=ta, transB=tb, alpha=alpha, beta=beta)
    check(make_model([node], {"a": list(a.shape)}, {"y": None}, {"b": b, "c": c}), {"a": a})
    check(make_model([node], {"a": list(a.shape), "b": list(b.shape), "c": [20]}, {"y": None}),
          {"a": a, "b": b, "c": c})


def test_batched_matmul_of_two_activations(rng):
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    model = make_model([node], {"a": [2, 3, 5, 17], "b": [2, 3, 17, 6]}, {"y": None})
    backend = check(model, {"a": rng.standard_normal((2, 3, 5, 17)).astype(np.float32),
                            "b": rng.standard_normal((2, 3, 17, 6)).astype(np.float32)})
    assert ops(backend, isa.MatMul)[0].groups == 6


POOLS = {
    "max_ceil": ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    "max_dilated_pad": ("MaxPool", dict(kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1])),
    "avg_pad_counted": ("AveragePool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)),
    "avg_pad_uncounted_ceil": ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                                  ceil_mode=1)),
    "avg_same_lower": ("AveragePool", dict(kernel_shape=[2, 3], auto_pad="SAME_LOWER")),
    "global_avg": ("GlobalAveragePool", {}),
    "global_max": ("GlobalMaxPool", {}),
}


@pytest.mark.parametrize("name", POOLS)
def test_pools(name, rng):
    op, attrs = POOLS[name]
    model = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": [1, 3, 9, 8]}, {"y": None})
    backend = check(model, {"x": rng.standard_normal((1, 3, 9, 8)).astype(np.float32)})
    assert len(ops(backend, isa.Pool)) == 1


def test_vector_ops_layout_and_standalone_batchnorm(rng):
    inits = {"k": rng.standard_normal((1, 6, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Add", ["x", "k"], ["a"]), helper.make_node("Sigmoid", ["a"], ["s"]),
             helper.make_node("Mul", ["s", "x"], ["m"]), helper.make_node("Tanh", ["m"], ["t"]),
             helper.make_node("Sub", ["t", "x"], ["d"]), helper.make_node("Relu", ["d"], ["r"]),
             helper.make_node("BatchNormalization", ["r", "sc", "bb", "mu", "var"], ["bn"]),
             helper.make_node("Transpose", ["bn"], ["tr"], perm=[0, 2, 3, 1]),
             helper.make_node("Flatten", ["tr"], ["y"], axis=1)]
    model = make_model(nodes, {"x": [1, 6, 4, 5], "sc": [6], "bb": [6], "mu": [6], "var": [6]}, {"y": None}, inits)
    feeds = {"x": rng.standard_normal((1, 6, 4, 5)).astype(np.float32),
             **{n: rng.uniform(0.5, 2, 6).astype(np.float32) for n in ("sc", "bb", "mu", "var")}}
    backend = check(model, feeds, strict=1)
    assert not ops(backend, isa.HostCall)


def _host_sandwich(rng):
    inits = {"w1": rng.standard_normal((30, 20)).astype(np.float32),
             "w2": rng.standard_normal((20, 10)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
             helper.make_node("Erf", ["h"], ["p"], name="gelu_erf"),
             helper.make_node("Exp", ["p"], ["e"], name="exp"),
             helper.make_node("MatMul", ["e", "w2"], ["y"], name="fc2")]
    return make_model(nodes, {"x": [1, 30]}, {"y": None}, inits)


def test_unsupported_ops_run_on_the_host_as_one_partition(rng):
    model = _host_sandwich(rng)
    backend = check(model, {"x": rng.standard_normal((1, 30)).astype(np.float32)})
    (call,) = ops(backend, isa.HostCall)
    assert call.srcs == ("h",) and call.dsts == ("e",) and call.in_bytes == call.out_bytes == 80
    assert len(backend.program.host_parts[0].graph.node) == 2
    from backends.fpga.cycles import cost, link_cycles

    assert cost(backend.cfg, call).cycles == 2 * link_cycles(backend.cfg, 80) > 0


def test_strict_refuses_naming_the_first_unsupported_node(rng):
    with pytest.raises(ModelLoadFailed, match=r"'gelu_erf' \(op Erf\)"):
        fpga(_host_sandwich(rng), strict=1)


def test_weights_that_do_not_fit_are_refused_with_both_sizes(rng):
    model = _host_sandwich(rng)  # 30x20 + 20x10 weights: 2x2 + 2x1 tiles of 16x16 at 16 + 8/16 bits: 6*256*16.5/8
    with pytest.raises(ModelLoadFailed, match=r"need 3168 bytes .* has 1024 bytes"):
        fpga(model, weight_mem="1KiB")
    fpga(model, weight_mem="3168")  # exactly enough


def test_bad_options_are_load_errors(rng):
    for options in ({"array": "16"}, {"fpga_sim": "fast"}, {"colour": "red"}, {"activations": "fp32"}):
        with pytest.raises(ModelLoadFailed):
            fpga(_host_sandwich(rng), **options)


def test_a_host_partition_can_produce_the_model_output(rng):
    inits = {"w": rng.standard_normal((20, 4)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Softmax", ["h"], ["s"]),
             helper.make_node("Erf", ["s"], ["p"])]
    model = make_model(nodes, {"x": [1, 20]}, {"p": None}, inits)
    backend = check(model, {"x": rng.standard_normal((1, 20)).astype(np.float32)})
    assert isinstance(backend.program.body[-2], isa.HostCall) and isinstance(backend.program.body[-1], isa.Send)
    assert backend.program.body[-2].dsts == ("p",) and len(ops(backend, isa.Softmax)) == 1


@pytest.mark.parametrize("precision", ["msfp16", "mxint8", "msfp12"])
def test_narrow_layers_compute_exactly_the_quantisers_fpga_model(precision, rng):
    """A models/quantize model on the device equals numpy's ``quantize_activations(x) @ W``
    with the dequantised weights, up to the fp32 rounding of the result: block products
    are exact integers in the wide accumulator."""
    from models.quantize import quantize_activations, quantize_model
    from models.quantize.onnx_io import initializer

    w = rng.standard_normal((70, 24)).astype(np.float32)
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": ["n", 70]}, {"y": ["n", 24]}, {"w": w})
    q = quantize_model(model, precision)
    x = rng.standard_normal((1, 70)).astype(np.float32) * 10
    backend = fpga(q.model, q.layer_formats, **q.backend_options)
    (w_q,) = ort_run(q.model, {"x": np.eye(70, dtype=np.float32)})  # the dequantised weights, exactly
    want = quantize_activations(x, precision).astype(np.float64) @ w_q.astype(np.float64)
    got = backend.run({"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=2e-7, atol=1e-7 * float(np.abs(want).max()))
    assert not np.allclose(got, x @ w_q, rtol=1e-5)  # the activations really were quantised


def test_a_host_partition_takes_what_its_subgraphs_read_from_the_outer_graph(rng):
    """An If's branches read ``h`` by name, not as a node input: the host partition must
    still take ``h`` from the device (a Loop's or Scan's body reads the same way)."""
    out = lambda: [helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [1, 4])]  # noqa: E731
    then = helper.make_graph([helper.make_node("Identity", ["h"], ["b"])], "then", [], out())
    other = helper.make_graph([helper.make_node("Neg", ["h"], ["b"])], "else", [], out())
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(nodes, "t", [vi("x", onnx.TensorProto.FLOAT, [1, 3]), vi("c", onnx.TensorProto.BOOL, [])],
                              [vi("y", onnx.TensorProto.FLOAT, [1, 4])],
                              [onnx.numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "w")])
    model = finalize(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))
    backend = fpga(model)
    (call,) = ops(backend, isa.HostCall)
    assert "h" in call.srcs
    for c in (True, False):
        feeds = {"x": rng.standard_normal((1, 3)).astype(np.float32), "c": np.array(c)}
        np.testing.assert_allclose(backend.run(feeds)["y"], ort_run(model, feeds)[0], rtol=1e-3, atol=1e-3)
