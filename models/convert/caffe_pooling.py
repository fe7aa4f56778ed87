"""Caffe pooling in ONNX: Caffe's output-size rounding and its average-pool divisor.

Caffe (pooling_layer.cpp) sizes its output with *ceil* by default and then, when there
is padding, drops the last window if it would start in the right padding. Its AVE
divisor counts the zero padding inside ``pad`` but not the part of a ceil-rounded
window that hangs past ``size + pad``. ONNX has neither rule as such, so we emit
explicit, possibly asymmetric, pads that give Caffe's output size with floor rounding,
and choose ``count_include_pad`` (or an explicit Pad node) so the divisor matches.
"""
from __future__ import annotations

import math

from .errors import ConversionError


def caffe_pooled_size(size: int, kernel: int, stride: int, pad: int, ceil: bool = True) -> int:
    """Caffe's pooled output size along one axis."""
    rounding = math.ceil if ceil else math.floor
    out = int(rounding((size + 2 * pad - kernel) / stride)) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1  # the last window would start in the padding: Caffe clips it
    return out


def end_padding(size: int, kernel: int, stride: int, pad: int, out: int) -> int:
    """Right padding that makes floor-rounded ONNX pooling produce ``out`` windows."""
    return max(0, (out - 1) * stride + kernel - size - pad)


def _spatial(param):
    """(kernel, stride, pad) per spatial axis (Caffe pooling is 2-D), from the _h/_w fields or the shared ones."""
    kernel = (param.kernel_h, param.kernel_w) if param.HasField("kernel_h") else (param.kernel_size,) * 2
    stride = (param.stride_h, param.stride_w) if param.HasField("stride_h") else (param.stride,) * 2
    pad = (param.pad_h, param.pad_w) if param.HasField("pad_h") or param.HasField("pad_w") else (param.pad,) * 2
    return kernel, stride, pad


def emit_pooling(b, layer, blobs) -> None:
    """MaxPool / AveragePool (or their Global forms) with Caffe's rounding and divisor."""
    param = layer.pooling_param
    method = param.PoolMethod.Name(param.pool)
    if method == "STOCHASTIC":
        raise ConversionError(f"{b.source}: layer {layer.name!r} (Pooling): STOCHASTIC pooling has no inference form in ONNX")
    x = b.read(layer.bottom[0], layer.name)
    shape = b.shape(x, layer.name)
    if len(shape) != 4:
        raise ConversionError(f"{b.source}: layer {layer.name!r} (Pooling): expected a 4-D input, got shape {shape}")
    y = b.write(layer.top[0])
    if param.global_pooling:
        b.node("GlobalMaxPool" if method == "MAX" else "GlobalAveragePool", [x], [y], layer.name)
        return
    kernel, stride, pad = _spatial(param)
    if 0 in kernel or 0 in stride:
        raise ConversionError(f"{b.source}: layer {layer.name!r} (Pooling): kernel size and stride must be set and > 0")
    sizes = shape[2:]
    if any(isinstance(s, str) for s in sizes):
        raise ConversionError(f"{b.source}: layer {layer.name!r} (Pooling): spatial size must be known, got {shape}")
    ceil = param.round_mode == param.CEIL
    outs = [caffe_pooled_size(s, k, st, p, ceil) for s, k, st, p in zip(sizes, kernel, stride, pad)]
    ends = [end_padding(s, k, st, p, o) for s, k, st, p, o in zip(sizes, kernel, stride, pad, outs)]
    if any(e >= k for e, k in zip(ends, kernel)):
        raise ConversionError(f"{b.source}: layer {layer.name!r} (Pooling): a window lies wholly outside the input")
    common = dict(kernel_shape=list(kernel), strides=list(stride))
    if method == "MAX":
        # Padding never wins a max, in Caffe or ONNX, so the pads only set the count.
        b.node("MaxPool", [x], [y], layer.name, pads=list(pad) + ends, **common)
    elif ends == list(pad):
        # Symmetric: every window lies inside [-pad, size + pad), all of which Caffe counts.
        b.node("AveragePool", [x], [y], layer.name, pads=list(pad) * 2, count_include_pad=1, **common)
    elif not any(pad):
        # Only ceil overhang, which Caffe does not count.
        b.node("AveragePool", [x], [y], layer.name, pads=[0, 0] + ends, count_include_pad=0, **common)
    else:
        # Both: zero-pad explicitly (counted), then pool over the overhang (not counted).
        padded = b.temp(f"{layer.name}/pad")
        pads = b.const(f"{layer.name}/pads", _int64([0, 0, pad[0], pad[1], 0, 0, pad[0], pad[1]]))
        b.node("Pad", [x, pads], [padded], f"{layer.name}/pad")
        overhang = [max(0, e - p) for e, p in zip(ends, pad)]
        b.node("AveragePool", [padded], [y], layer.name, pads=[0, 0] + overhang, count_include_pad=0, **common)


def _int64(values):
    import numpy as np

    return np.asarray(values, dtype=np.int64)
