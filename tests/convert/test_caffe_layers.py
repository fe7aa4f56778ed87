"""Each supported Caffe layer, converted and run under onnxruntime, against numpy code
that follows Caffe's own CPU implementation."""
from __future__ import annotations

import numpy as np
import pytest

from . import numpy_caffe as ref
from ._caffe_net import input_layer, run_net

rng = np.random.default_rng(1234)
TOL = dict(rtol=1e-4, atol=1e-5)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def one_layer(tmp_path, in_shape, layer_text, weights=None, x=None, **convert_args):
    x = randn(*in_shape) if x is None else x
    (y, *_), result = run_net(tmp_path, input_layer(in_shape) + layer_text, weights or {}, {"data": x}, **convert_args)
    return x, y, result


@pytest.mark.parametrize("params, kw", [
    ("kernel_size: 3", dict()),
    ("kernel_size: 3 pad: 1 stride: 2", dict(stride=(2, 2), pad=(1, 1))),
    ("kernel_size: 3 dilation: 2 pad: 2", dict(pad=(2, 2), dilation=(2, 2))),
    ("kernel_h: 3 kernel_w: 1 pad_h: 1 pad_w: 0 stride_h: 1 stride_w: 2", dict(stride=(1, 2), pad=(1, 0))),
    ("kernel_size: 3 group: 2 pad: 1", dict(pad=(1, 1), group=2)),
])
def test_convolution(tmp_path, params, kw):
    group = kw.get("group", 1)
    kh, kw_ = (3, 1) if "kernel_h" in params else (3, 3)
    w, b = randn(6, 4 // group, kh, kw_), randn(6)
    text = f'layer {{ name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param {{ num_output: 6 {params} }} }}'
    x, y, _ = one_layer(tmp_path, (1, 4, 9, 8), text, {"c": [w, b]})
    np.testing.assert_allclose(y, ref.conv2d(x, w, b, **kw), **TOL)


def test_convolution_without_bias(tmp_path):
    w = randn(3, 2, 1, 1)
    text = 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 3 kernel_size: 1 bias_term: false } }'
    x, y, _ = one_layer(tmp_path, (1, 2, 4, 4), text, {"c": [w]})
    np.testing.assert_allclose(y, ref.conv2d(x, w), **TOL)


@pytest.mark.parametrize("group", [1, 2])
def test_deconvolution(tmp_path, group):
    w, b = randn(4, 6 // group, 4, 4), randn(6)
    text = (f'layer {{ name: "d" type: "Deconvolution" bottom: "data" top: "d" convolution_param '
            f'{{ num_output: 6 kernel_size: 4 stride: 2 pad: 1 group: {group} }} }}')
    x, y, _ = one_layer(tmp_path, (1, 4, 5, 5), text, {"d": [w, b]})
    np.testing.assert_allclose(y, ref.deconv2d(x, w, b, stride=(2, 2), pad=(1, 1), group=group), **TOL)


POOLING_CASES = [
    # (H, W, kernel, stride, pad, round mode): what each one exercises
    (8, 8, 2, 2, 0, "CEIL"),   # exact fit: ceil and floor agree
    (7, 7, 2, 2, 0, "CEIL"),   # ceil adds a window hanging past the edge (LeNet-style odd sizes)
    (7, 7, 2, 2, 0, "FLOOR"),  # the same with floor rounding: the partial window is dropped
    (5, 5, 2, 2, 1, "CEIL"),   # ceil's extra window would start in the padding: Caffe clips it
    (6, 6, 3, 2, 1, "CEIL"),   # padding plus overhang past the padding (AVE divisor differs)
    (8, 8, 3, 1, 1, "CEIL"),   # symmetric padding, no overhang
    (13, 13, 3, 2, 0, "CEIL"), # AlexNet/GoogLeNet's 3x3/2 on odd sizes
    (6, 7, 3, 3, 2, "CEIL"),   # stride = kernel with large padding, non-square input
]


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("h, w, k, s, p, mode", POOLING_CASES)
def test_pooling_matches_caffe_rounding(tmp_path, method, h, w, k, s, p, mode):
    text = (f'layer {{ name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param '
            f'{{ pool: {method} kernel_size: {k} stride: {s} pad: {p} round_mode: {mode} }} }}')
    x, y, _ = one_layer(tmp_path, (1, 3, h, w), text)
    want = ref.pool2d(x, (k, k), (s, s), (p, p), method, ceil=mode == "CEIL")
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, **TOL)


def test_pooling_rectangular_kernel(tmp_path):
    text = ('layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param '
            '{ pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0 } }')
    x, y, _ = one_layer(tmp_path, (1, 2, 7, 6), text)
    np.testing.assert_allclose(y, ref.pool2d(x, (3, 2), (2, 1), (1, 0), "AVE"), **TOL)


@pytest.mark.parametrize("method, reduce", [("MAX", np.max), ("AVE", np.mean)])
def test_global_pooling(tmp_path, method, reduce):
    text = f'layer {{ name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param {{ pool: {method} global_pooling: true }} }}'
    x, y, _ = one_layer(tmp_path, (1, 3, 5, 6), text)
    np.testing.assert_allclose(y, reduce(x, axis=(2, 3), keepdims=True), **TOL)


def test_inner_product_flattens_4d_input(tmp_path):
    w, b = randn(5, 2 * 3 * 3), randn(5)
    text = 'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 5 } }'
    x, y, _ = one_layer(tmp_path, (1, 2, 3, 3), text, {"ip": [w, b]})
    np.testing.assert_allclose(y, ref.inner_product(x, w, b), **TOL)


def test_inner_product_transposed_weights_no_bias(tmp_path):
    w = randn(6, 4)  # transpose: true stores K x N
    text = ('layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
            'inner_product_param { num_output: 4 transpose: true bias_term: false } }')
    x, y, _ = one_layer(tmp_path, (1, 6), text, {"ip": [w]})
    np.testing.assert_allclose(y, x @ w, **TOL)


def test_inner_product_axis_2(tmp_path):
    w, b = randn(3, 4 * 5), randn(3)
    text = 'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 axis: 2 } }'
    x, y, _ = one_layer(tmp_path, (1, 2, 4, 5), text, {"ip": [w, b]})
    np.testing.assert_allclose(y, x.reshape(1, 2, 20) @ w.T + b, **TOL)


@pytest.mark.parametrize("text, fn", [
    ('type: "ReLU"', lambda x: np.maximum(x, 0)),
    ('type: "ReLU" relu_param { negative_slope: 0.1 }', lambda x: np.where(x > 0, x, 0.1 * x)),
    ('type: "Sigmoid"', lambda x: 1 / (1 + np.exp(-x))),
    ('type: "TanH"', np.tanh),
    ('type: "Softmax"', lambda x: ref.softmax(x, axis=1)),
    ('type: "Softmax" softmax_param { axis: 3 }', lambda x: ref.softmax(x, axis=3)),
])
def test_activations(tmp_path, text, fn):
    x, y, _ = one_layer(tmp_path, (1, 3, 4, 5), f'layer {{ name: "a" {text} bottom: "data" top: "a" }}')
    np.testing.assert_allclose(y, fn(x.astype(np.float64)), **TOL)


@pytest.mark.parametrize("shared", [False, True])
def test_prelu(tmp_path, shared):
    slope = randn(1 if shared else 3)
    text = f'layer {{ name: "pr" type: "PReLU" bottom: "data" top: "pr" prelu_param {{ channel_shared: {str(shared).lower()} }} }}'
    x, y, _ = one_layer(tmp_path, (1, 3, 4, 4), text, {"pr": [slope]})
    np.testing.assert_allclose(y, np.where(x > 0, x, slope.reshape(1, -1, 1, 1) * x), **TOL)


def test_lrn_across_channels(tmp_path):
    text = 'layer { name: "n" type: "LRN" bottom: "data" top: "n" lrn_param { local_size: 5 alpha: 0.001 beta: 0.75 k: 2 } }'
    x, y, _ = one_layer(tmp_path, (1, 7, 4, 4), text)
    np.testing.assert_allclose(y, ref.lrn_across(x, 5, 0.001, 0.75, 2.0), **TOL)


def test_lrn_within_channel(tmp_path):
    text = ('layer { name: "n" type: "LRN" bottom: "data" top: "n" '
            'lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL } }')
    x, y, _ = one_layer(tmp_path, (1, 2, 5, 5), text)
    np.testing.assert_allclose(y, ref.lrn_within(x, 3, 0.5, 0.75), **TOL)


def test_batchnorm_and_scale_after_conv_fold_away(tmp_path):
    w = randn(4, 3, 3, 3)
    mean, var, gamma, beta = randn(4), np.abs(randn(4)) + 0.5, randn(4), randn(4)
    factor = np.array([2.0], np.float32)  # Caffe stores running sums scaled by this
    text = ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 4 kernel_size: 3 bias_term: false } }\n'
            'layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" batch_norm_param { use_global_stats: true eps: 0.001 } }\n'
            'layer { name: "sc" type: "Scale" bottom: "c" top: "c" scale_param { bias_term: true } }')
    weights = {"c": [w], "bn": [mean * 2, var * 2, factor], "sc": [gamma, beta]}
    x, y, result = one_layer(tmp_path, (1, 3, 6, 6), text, weights)
    c = ref.conv2d(x, w)
    r = lambda a: a.reshape(1, -1, 1, 1)
    want = (c - r(mean)) / np.sqrt(r(var) + 1e-3) * r(gamma) + r(beta)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    assert set(result.summary.op_counts) == {"Conv"}  # BatchNorm and Scale folded into it


def test_eltwise_sum_with_coefficients_prod_and_max(tmp_path):
    text = ('layer { name: "a" type: "Sigmoid" bottom: "data" top: "a" }\n'
            'layer { name: "t" type: "TanH" bottom: "data" top: "t" }\n'
            'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "t" top: "sum" eltwise_param { operation: SUM coeff: 1 coeff: -0.5 } }\n'
            'layer { name: "prod" type: "Eltwise" bottom: "a" bottom: "t" bottom: "data" top: "prod" eltwise_param { operation: PROD } }\n'
            'layer { name: "max" type: "Eltwise" bottom: "a" bottom: "t" top: "max" eltwise_param { operation: MAX } }\n'
            'layer { name: "cat" type: "Concat" bottom: "sum" bottom: "prod" bottom: "max" top: "cat" }')
    x, y, _ = one_layer(tmp_path, (1, 2, 3, 3), text)
    a, t = 1 / (1 + np.exp(-x.astype(np.float64))), np.tanh(x.astype(np.float64))
    np.testing.assert_allclose(y, np.concatenate([a - 0.5 * t, a * t * x, np.maximum(a, t)], axis=1), **TOL)


def test_split_slice_and_concat_axis(tmp_path):
    text = ('layer { name: "sp" type: "Split" bottom: "data" top: "d1" top: "d2" }\n'
            'layer { name: "sl" type: "Slice" bottom: "d1" top: "s1" top: "s2" top: "s3" slice_param { axis: 1 slice_point: 1 slice_point: 3 } }\n'
            'layer { name: "r" type: "ReLU" bottom: "d2" top: "r" }\n'
            'layer { name: "cat" type: "Concat" bottom: "s3" bottom: "r" bottom: "s1" top: "cat" concat_param { axis: 1 } }\n'
            'layer { name: "kill" type: "Sigmoid" bottom: "s2" top: "s2out" }')
    x = randn(1, 5, 2, 2)
    (cat, s2out), _ = run_net(tmp_path, input_layer((1, 5, 2, 2)) + text, {}, {"data": x})
    np.testing.assert_allclose(cat, np.concatenate([x[:, 3:], np.maximum(x, 0), x[:, :1]], axis=1), **TOL)
    np.testing.assert_allclose(s2out, 1 / (1 + np.exp(-x[:, 1:3])), **TOL)


def test_dropout_is_removed(tmp_path):
    text = ('layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'
            'layer { name: "drop" type: "Dropout" bottom: "r" top: "r" dropout_param { dropout_ratio: 0.5 } }')
    x, y, result = one_layer(tmp_path, (1, 3, 2, 2), text)
    np.testing.assert_allclose(y, np.maximum(x, 0))
    assert "Dropout" not in result.summary.op_counts


@pytest.mark.parametrize("text, shape", [
    ('type: "Flatten"', (1, 60)),
    ('type: "Flatten" flatten_param { axis: 2 }', (1, 3, 20)),
    ('type: "Reshape" reshape_param { shape { dim: 0 dim: -1 dim: 5 } }', (1, 12, 5)),
    ('type: "Reshape" reshape_param { shape { dim: 2 dim: 2 } axis: 2 num_axes: 1 }', (1, 3, 2, 2, 5)),
])
def test_flatten_and_reshape(tmp_path, text, shape):
    x, y, _ = one_layer(tmp_path, (1, 3, 4, 5), f'layer {{ name: "f" {text} bottom: "data" top: "f" }}')
    np.testing.assert_array_equal(y, x.reshape(shape))


def test_dynamic_batch(tmp_path):
    w, b = randn(3, 12), randn(3)
    text = 'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 3 } }'
    x = randn(4, 3, 2, 2)
    (y,), result = run_net(tmp_path, input_layer((64, 3, 2, 2)) + text, {"ip": [w, b]}, {"data": x}, dynamic_batch=True)
    assert result.summary.inputs[0].shape == ("N", 3, 2, 2)
    np.testing.assert_allclose(y, ref.inner_product(x, w, b), **TOL)


def test_batch_of_the_prototxt_becomes_one(tmp_path):
    x, y, result = one_layer(tmp_path, (1, 3, 2, 2), 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }')
    (y64, *_), result64 = run_net(tmp_path, input_layer((64, 3, 2, 2)) + 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }', {}, {"data": x})
    assert result64.summary.inputs[0].shape == (1, 3, 2, 2)
    np.testing.assert_array_equal(y64, y)


def test_batchnorm_alone_and_scale_alone(tmp_path):
    # Not fused: the unscaled BatchNorm output is also an output of the net.
    mean, var, gamma = randn(3), np.abs(randn(3)) + 0.5, randn(3)
    text = ('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }\n'
            'layer { name: "sc" type: "Scale" bottom: "bn" top: "sc" }\n'
            'layer { name: "keep" type: "ReLU" bottom: "bn" top: "keep" }')
    x = randn(1, 3, 2, 2)
    weights = {"bn": [mean, var, np.ones(1, np.float32)], "sc": [gamma]}
    (sc, keep), _ = run_net(tmp_path, input_layer((1, 3, 2, 2)) + text, weights, {"data": x})
    r = lambda a: a.reshape(1, -1, 1, 1)
    bn = (x - r(mean)) / np.sqrt(r(var) + 1e-5)
    np.testing.assert_allclose(sc, bn * r(gamma), **TOL)
    np.testing.assert_allclose(keep, np.maximum(bn, 0), **TOL)
