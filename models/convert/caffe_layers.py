"""Emitters for Caffe's weighted layers: Convolution, Deconvolution, InnerProduct,
BatchNorm, Scale and PReLU. Each reads its bottoms from the builder, checks the
caffemodel's blobs against the prototxt, and writes its tops.
"""
from __future__ import annotations

import numpy as np

from .errors import ConversionError


def need_blobs(b, layer, blobs, count: int, what: str) -> None:
    if len(blobs) < count:
        raise ConversionError(
            f"{b.source}: layer {layer.name!r} ({layer.type}) needs {what} from the caffemodel, "
            f"found {len(blobs)} blob(s); is the caffemodel for this prototxt?"
        )


def blob_as(b, layer, blob: np.ndarray, shape, what: str) -> np.ndarray:
    """``blob`` reshaped to ``shape``; Caffe's legacy 4-D blobs carry leading 1s."""
    shape = tuple(int(d) for d in shape)
    if blob.size != int(np.prod(shape)):
        raise ConversionError(
            f"{b.source}: layer {layer.name!r} ({layer.type}): {what} has shape {blob.shape}, expected {shape}"
        )
    return blob.reshape(shape).astype(np.float32)


def _conv_geometry(param, n_spatial: int):
    """(kernel, stride, pad, dilation) lists from Caffe's repeated or _h/_w fields."""
    def pick(repeated, h_w, default):
        if h_w is not None:
            return list(h_w)
        values = list(repeated) or [default]
        return values * n_spatial if len(values) == 1 else values

    hw = lambda h, w: (getattr(param, h), getattr(param, w)) if param.HasField(h) or param.HasField(w) else None
    kernel = pick(param.kernel_size, hw("kernel_h", "kernel_w"), 0)
    stride = pick(param.stride, hw("stride_h", "stride_w"), 1)
    pad = pick(param.pad, hw("pad_h", "pad_w"), 0)
    dilation = pick(param.dilation, None, 1)
    return kernel, stride, pad, dilation


def emit_convolution(b, layer, blobs) -> None:
    """Convolution -> Conv, Deconvolution -> ConvTranspose (same weight layout as ONNX)."""
    param = layer.convolution_param
    transposed = layer.type == "Deconvolution"
    if param.axis != 1:
        raise ConversionError(f"{b.source}: layer {layer.name!r} ({layer.type}): only channel axis 1 is supported")
    need_blobs(b, layer, blobs, 1 + param.bias_term, "weights" + (" and bias" if param.bias_term else ""))
    for bottom, top in zip(layer.bottom, layer.top):  # several pairs share the weights
        x = b.read(bottom, layer.name)
        shape = b.shape(x, layer.name)
        n_spatial = len(shape) - 2
        kernel, stride, pad, dilation = _conv_geometry(param, n_spatial)
        if len(kernel) != n_spatial or 0 in kernel:
            raise ConversionError(f"{b.source}: layer {layer.name!r} ({layer.type}): kernel size {kernel} "
                                  f"does not fit a {len(shape)}-D input")
        group, channels = param.group, shape[1]
        if transposed:
            w_shape = (channels, param.num_output // group, *kernel)
        else:
            w_shape = (param.num_output, channels // group, *kernel)
        weight = b.const(f"{layer.name}/W", blob_as(b, layer, blobs[0], w_shape, "weight"))
        inputs = [x, weight]
        if param.bias_term:
            inputs.append(b.const(f"{layer.name}/b", blob_as(b, layer, blobs[1], (param.num_output,), "bias")))
        b.node("ConvTranspose" if transposed else "Conv", inputs, [b.write(top)], layer.name,
               kernel_shape=kernel, strides=stride, pads=pad * 2, dilations=dilation, group=group)


def emit_inner_product(b, layer, blobs) -> None:
    """InnerProduct -> Flatten + Gemm (axis 1), or Reshape + MatMul + Add (other axes)."""
    param = layer.inner_product_param
    need_blobs(b, layer, blobs, 1 + param.bias_term, "weights" + (" and bias" if param.bias_term else ""))
    x = b.read(layer.bottom[0], layer.name)
    shape = b.shape(x, layer.name)
    axis = param.axis % len(shape)
    inner = shape[axis:]
    if any(isinstance(d, str) for d in inner):
        raise ConversionError(f"{b.source}: layer {layer.name!r} (InnerProduct): input shape {shape} not static")
    k, n = int(np.prod(inner)), param.num_output
    weight = blob_as(b, layer, blobs[0], (k, n) if param.transpose else (n, k), "weight")
    weight_kn = weight if param.transpose else weight.T
    bias = blob_as(b, layer, blobs[1], (n,), "bias") if param.bias_term else np.zeros(n, np.float32)
    y = b.write(layer.top[0])
    if axis == 1:
        flat = x
        if len(shape) > 2:
            flat = b.temp(f"{layer.name}/flat")
            b.node("Flatten", [x], [flat], f"{layer.name}/flatten", axis=1)
        b.node("Gemm", [flat, b.const(f"{layer.name}/W", np.ascontiguousarray(weight_kn)),
                        b.const(f"{layer.name}/b", bias)], [y], layer.name)
        return
    lead = b.temp(f"{layer.name}/reshaped")
    b.node("Reshape", [x, b.const(f"{layer.name}/shape", np.array([0] * axis + [-1], np.int64))],
           [lead], f"{layer.name}/reshape")
    product = b.temp(f"{layer.name}/matmul")
    b.node("MatMul", [lead, b.const(f"{layer.name}/W", np.ascontiguousarray(weight_kn))], [product], f"{layer.name}/matmul")
    b.node("Add", [product, b.const(f"{layer.name}/b", bias)], [y], layer.name)


def emit_batch_norm(b, layer, blobs, scale=None, scale_blobs=()) -> None:
    """BatchNorm -> BatchNormalization; a Scale layer right after it (``scale``) becomes
    its gamma and beta, the form every graph optimiser folds into a preceding Conv."""
    if layer.batch_norm_param.HasField("use_global_stats") and not layer.batch_norm_param.use_global_stats:
        raise ConversionError(f"{b.source}: layer {layer.name!r} (BatchNorm): use_global_stats is false, "
                              "so it normalises with batch statistics, which a batch-1 server cannot")
    need_blobs(b, layer, blobs, 3, "mean, variance and moving-average factor")
    x = b.read(layer.bottom[0], layer.name)
    channels = b.shape(x, layer.name)[1]
    factor = float(blobs[2].ravel()[0])
    factor = 0.0 if factor == 0 else 1.0 / factor  # Caffe stores running sums scaled by this factor
    mean = blob_as(b, layer, blobs[0], (channels,), "mean") * factor
    var = blob_as(b, layer, blobs[1], (channels,), "variance") * factor
    gamma, beta, top, name = np.ones(channels, np.float32), np.zeros(channels, np.float32), layer.top[0], layer.name
    if scale is not None:
        bias_term = scale.scale_param.bias_term
        need_blobs(b, scale, scale_blobs, 1 + bias_term, "scale" + (" and bias" if bias_term else ""))
        gamma = blob_as(b, scale, scale_blobs[0], (channels,), "scale")
        if bias_term:
            beta = blob_as(b, scale, scale_blobs[1], (channels,), "bias")
        top, name = scale.top[0], f"{layer.name}+{scale.name}"
    names = [b.const(f"{layer.name}/{n}", a) for n, a in
             (("scale", gamma), ("bias", beta), ("mean", mean), ("var", var))]
    b.node("BatchNormalization", [x, *names], [b.write(top)], name, epsilon=float(layer.batch_norm_param.eps))


def fusable_scale(bn, following, later) -> bool:
    """Whether Scale layer ``following`` only rescales ``bn``'s output per channel, and
    nothing in ``later`` reads that output unscaled."""
    if following is None or following.type != "Scale" or list(following.bottom) != [bn.top[0]]:
        return False
    p = following.scale_param
    if p.axis != 1 or p.num_axes != 1:
        return False
    if following.top[0] == bn.top[0]:
        return True  # in place: the unscaled blob is gone
    return not any(bn.top[0] in layer.bottom for layer in later)


def emit_scale(b, layer, blobs) -> None:
    """Scale -> Mul (+ Add); the factor is a learned blob or a second bottom."""
    param = layer.scale_param
    x = b.read(layer.bottom[0], layer.name)
    shape = b.shape(x, layer.name)
    axis = param.axis % len(shape)
    if len(layer.bottom) > 1:
        factor = b.read(layer.bottom[1], layer.name)
        covered = b.shape(factor, layer.name)
        factor_rank = len(covered)
        bias_blob = 0
    else:
        need_blobs(b, layer, blobs, 1 + param.bias_term, "scale" + (" and bias" if param.bias_term else ""))
        num_axes = len(shape) - axis if param.num_axes == -1 else param.num_axes
        covered = shape[axis:axis + num_axes]
        factor_rank = len(covered)
        factor = b.const(f"{layer.name}/scale", blob_as(b, layer, blobs[0], covered, "scale"))
        bias_blob = 1
    # Trailing 1s make Caffe's "from axis on" broadcast into numpy's "from the right" one.
    trailing = len(shape) - axis - factor_rank
    factor = _unsqueeze_trailing(b, layer, factor, factor_rank, trailing)
    y = b.write(layer.top[0])
    if not param.bias_term:
        b.node("Mul", [x, factor], [y], layer.name)
        return
    need_blobs(b, layer, blobs, bias_blob + 1, "bias")
    bias = blob_as(b, layer, blobs[bias_blob], covered, "bias").reshape(tuple(covered) + (1,) * trailing)
    scaled = b.temp(f"{layer.name}/scaled")
    b.node("Mul", [x, factor], [scaled], f"{layer.name}/mul")
    b.node("Add", [scaled, b.const(f"{layer.name}/bias", bias)], [y], layer.name)


def _unsqueeze_trailing(b, layer, value: str, rank: int, trailing: int) -> str:
    if trailing <= 0:
        return value
    out = b.temp(f"{layer.name}/factor")
    axes = b.const(f"{layer.name}/axes", np.arange(rank, rank + trailing, dtype=np.int64))
    b.node("Unsqueeze", [value, axes], [out], f"{layer.name}/unsqueeze")
    return out


def emit_prelu(b, layer, blobs) -> None:
    """PReLU -> PRelu with the slope shaped (C, 1, ...) to broadcast over channels."""
    need_blobs(b, layer, blobs, 1, "slopes")
    x = b.read(layer.bottom[0], layer.name)
    shape = b.shape(x, layer.name)
    count = 1 if layer.prelu_param.channel_shared else shape[1]
    slope = blob_as(b, layer, blobs[0], (count,), "slope").reshape((count,) + (1,) * (len(shape) - 2))
    b.node("PRelu", [x, b.const(f"{layer.name}/slope", slope)], [b.write(layer.top[0])], layer.name)


EMITTERS = {
    "Convolution": emit_convolution,
    "Deconvolution": emit_convolution,
    "InnerProduct": emit_inner_product,
    "BatchNorm": emit_batch_norm,
    "Scale": emit_scale,
    "PReLU": emit_prelu,
}
