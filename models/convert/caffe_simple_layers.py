"""Emitters for Caffe's weight-free layers: activations, Softmax, LRN, Eltwise, and the
layers that only move data around (Concat, Slice, Split, Flatten, Reshape, Dropout).
"""
from __future__ import annotations

import numpy as np

from .errors import ConversionError


def _unary(op: str, **attrs):
    def emit(b, layer, blobs) -> None:
        x = b.read(layer.bottom[0], layer.name)
        b.node(op, [x], [b.write(layer.top[0])], layer.name, **attrs)
    return emit


def emit_relu(b, layer, blobs) -> None:
    slope = layer.relu_param.negative_slope
    x = b.read(layer.bottom[0], layer.name)
    y = b.write(layer.top[0])
    if slope:
        b.node("LeakyRelu", [x], [y], layer.name, alpha=float(slope))
    else:
        b.node("Relu", [x], [y], layer.name)


def emit_softmax(b, layer, blobs) -> None:
    # Since opset 13 ONNX Softmax normalises along one axis, as Caffe's does.
    x = b.read(layer.bottom[0], layer.name)
    b.node("Softmax", [x], [b.write(layer.top[0])], layer.name, axis=int(layer.softmax_param.axis))


def emit_lrn(b, layer, blobs) -> None:
    """ACROSS_CHANNELS is ONNX LRN exactly; WITHIN_CHANNEL is built from an average pool."""
    p = layer.lrn_param
    if p.local_size % 2 == 0:
        raise ConversionError(f"{b.source}: layer {layer.name!r} (LRN): local_size must be odd, got {p.local_size}")
    x = b.read(layer.bottom[0], layer.name)
    y = b.write(layer.top[0])
    if p.norm_region == p.ACROSS_CHANNELS:
        b.node("LRN", [x], [y], layer.name, size=int(p.local_size), alpha=float(p.alpha),
               beta=float(p.beta), bias=float(p.k))
        return
    # Caffe: x / (1 + alpha * mean of x^2 over a local_size^2 window) ^ beta (k unused).
    name, half = layer.name, (p.local_size - 1) // 2
    sq, avg, den = b.temp(f"{name}/sq"), b.temp(f"{name}/avg"), b.temp(f"{name}/den")
    b.node("Mul", [x, x], [sq], f"{name}/sq")
    b.node("AveragePool", [sq], [avg], f"{name}/avg", kernel_shape=[p.local_size] * 2,
           pads=[half] * 4, count_include_pad=1)
    scaled = b.temp(f"{name}/scaled")
    b.node("Mul", [avg, b.const(f"{name}/alpha", np.array(p.alpha, np.float32))], [scaled], f"{name}/alpha")
    shifted = b.temp(f"{name}/shifted")
    b.node("Add", [scaled, b.const(f"{name}/one", np.array(1.0, np.float32))], [shifted], f"{name}/one")
    b.node("Pow", [shifted, b.const(f"{name}/beta", np.array(p.beta, np.float32))], [den], f"{name}/pow")
    b.node("Div", [x, den], [y], name)


def emit_eltwise(b, layer, blobs) -> None:
    p = layer.eltwise_param
    xs = [b.read(bottom, layer.name) for bottom in layer.bottom]
    y = b.write(layer.top[0])
    op = p.EltwiseOp.Name(p.operation)
    if p.coeff and (op != "SUM" or len(p.coeff) != len(xs)):
        raise ConversionError(f"{b.source}: layer {layer.name!r} (Eltwise): coeff needs SUM and one value per "
                              f"bottom ({len(xs)}), got {len(p.coeff)} for {op}")
    if op == "SUM" and p.coeff and any(c != 1 for c in p.coeff):
        scaled = []
        for i, (x, c) in enumerate(zip(xs, p.coeff)):
            out = b.temp(f"{layer.name}/coeff{i}")
            b.node("Mul", [x, b.const(f"{layer.name}/c{i}", np.array(c, np.float32))], [out], f"{layer.name}/coeff{i}")
            scaled.append(out)
        xs = scaled
    onnx_op = {"SUM": "Sum", "PROD": "Mul", "MAX": "Max"}[op]
    if onnx_op == "Mul":  # Mul is binary; fold the bottoms left to right as Caffe does
        acc = xs[0]
        for i, x in enumerate(xs[1:], 1):
            out = y if i == len(xs) - 1 else b.temp(f"{layer.name}/prod{i}")
            b.node("Mul", [acc, x], [out], layer.name if out == y else f"{layer.name}/prod{i}")
            acc = out
        return
    b.node(onnx_op, xs, [y], layer.name)


def emit_concat(b, layer, blobs) -> None:
    p = layer.concat_param
    axis = p.concat_dim if p.HasField("concat_dim") and not p.HasField("axis") else p.axis
    xs = [b.read(bottom, layer.name) for bottom in layer.bottom]
    b.node("Concat", xs, [b.write(layer.top[0])], layer.name, axis=int(axis))


def emit_slice(b, layer, blobs) -> None:
    p = layer.slice_param
    axis = p.slice_dim if p.HasField("slice_dim") and not p.HasField("axis") else p.axis
    x = b.read(layer.bottom[0], layer.name)
    size = b.shape(x, layer.name)[axis]
    count = len(layer.top)
    if p.slice_point:
        points = [0, *p.slice_point, size]
        if len(points) - 1 != count or points != sorted(points):
            raise ConversionError(f"{b.source}: layer {layer.name!r} (Slice): slice points {list(p.slice_point)} "
                                  f"do not cut axis {axis} (size {size}) into {count} parts")
        sizes = [hi - lo for lo, hi in zip(points, points[1:])]
    elif size % count == 0:
        sizes = [size // count] * count
    else:
        raise ConversionError(f"{b.source}: layer {layer.name!r} (Slice): axis size {size} does not split into {count}")
    split = b.const(f"{layer.name}/split", np.array(sizes, np.int64))
    b.node("Split", [x, split], [b.write(top) for top in layer.top], layer.name, axis=int(axis))


def emit_split(b, layer, blobs) -> None:
    value = b.read(layer.bottom[0], layer.name)
    for top in layer.top:
        b.alias(top, value)


def emit_flatten(b, layer, blobs) -> None:
    x = b.read(layer.bottom[0], layer.name)
    shape = b.shape(x, layer.name)
    axis, end = layer.flatten_param.axis % len(shape), layer.flatten_param.end_axis % len(shape)
    y = b.write(layer.top[0])
    if axis == 1 and end == len(shape) - 1:
        b.node("Flatten", [x], [y], layer.name, axis=1)
        return
    target = [0] * axis + [-1] + _static(b, layer, shape[end + 1:])
    b.node("Reshape", [x, b.const(f"{layer.name}/shape", np.array(target, np.int64))], [y], layer.name)


def emit_reshape(b, layer, blobs) -> None:
    p = layer.reshape_param
    x = b.read(layer.bottom[0], layer.name)
    shape = b.shape(x, layer.name)
    start = p.axis if p.axis >= 0 else len(shape) + p.axis + 1
    end = len(shape) if p.num_axes == -1 else start + p.num_axes
    dims = list(p.shape.dim)
    if sum(d == -1 for d in dims) > 1:
        raise ConversionError(f"{b.source}: layer {layer.name!r} (Reshape): more than one -1 in {dims}")
    # Leading kept axes and Caffe's 0 ("copy") sit at the same index in ONNX, whose 0 also copies.
    target = [0] * start + dims + _static(b, layer, shape[end:])
    b.node("Reshape", [x, b.const(f"{layer.name}/shape", np.array(target, np.int64))],
           [b.write(layer.top[0])], layer.name)


def emit_dropout(b, layer, blobs) -> None:
    # Inference: Caffe's Dropout scales at training time, so at test time it is identity.
    b.alias(layer.top[0], b.read(layer.bottom[0], layer.name))


def _static(b, layer, dims) -> list[int]:
    if any(isinstance(d, str) for d in dims):
        raise ConversionError(f"{b.source}: layer {layer.name!r} ({layer.type}): needs static dims, got {dims}")
    return [int(d) for d in dims]


EMITTERS = {
    "ReLU": emit_relu,
    "Sigmoid": _unary("Sigmoid"),
    "TanH": _unary("Tanh"),
    "Softmax": emit_softmax,
    "LRN": emit_lrn,
    "Eltwise": emit_eltwise,
    "Concat": emit_concat,
    "Slice": emit_slice,
    "Split": emit_split,
    "Flatten": emit_flatten,
    "Reshape": emit_reshape,
    "Dropout": emit_dropout,
}
