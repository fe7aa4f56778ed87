"""Lowering of the vector-unit ops: element-wise functions, pooling, layout, BatchNorm."""
from __future__ import annotations

import numpy as np

from backends.fpga import isa
from backends.fpga.lower_context import Ctx, Unsupported
from backends.fpga.geometry import windows


def _size(ctx: Ctx, name: str) -> int:
    return int(np.prod(ctx.shape(name)))


def _unary(kind: str):
    def lower(ctx: Ctx, node) -> None:
        if len([o for o in node.output if o]) != 1:
            raise Unsupported("extra outputs (e.g. a Dropout mask)")
        if node.op_type == "Dropout" and ctx.g.attrs(node).get("training_mode") is not None:
            raise Unsupported("Dropout in training mode")
        out = node.output[0]
        ctx.emit(isa.Unary(kind, out, ctx.operand(node.input[0]), _size(ctx, out)))
    return lower


def _binary(kind: str):
    def lower(ctx: Ctx, node) -> None:
        out = node.output[0]
        a, b = (ctx.operand(i) for i in node.input)
        ctx.emit(isa.Binary(kind, out, a, b, _size(ctx, out)))
    return lower


def _pool(kind: str, global_: bool = False):
    def lower(ctx: Ctx, node) -> None:
        if len([o for o in node.output if o]) != 1:
            raise Unsupported("MaxPool's Indices output")
        at = ctx.g.attrs(node)
        sx = ctx.shape(node.input[0])
        nd = len(sx) - 2
        if nd < 1:
            raise Unsupported(f"input of rank {len(sx)}")
        if global_:
            kernel, strides, dil, pads, auto_pad, ceil = sx[2:], (1,) * nd, (1,) * nd, None, "NOTSET", False
        else:
            kernel = tuple(at["kernel_shape"])
            strides = tuple(at.get("strides", (1,) * nd))
            dil = tuple(at.get("dilations", (1,) * nd))
            pads, auto_pad, ceil = at.get("pads"), at.get("auto_pad", "NOTSET"), bool(at.get("ceil_mode", 0))
        pads, out, real_ends = windows(sx[2:], kernel, strides, dil, pads, auto_pad, ceil)
        geom = isa.PoolGeometry(sx, tuple(kernel), strides, pads, dil, out,
                                bool(at.get("count_include_pad", 0)), real_ends)
        if ctx.shape(node.output[0]) != sx[:2] + out:
            raise Unsupported(f"pooling output shape {ctx.shape(node.output[0])} != computed {sx[:2] + out}")
        ctx.emit(isa.Pool(kind, node.output[0], node.input[0], geom))
    return lower


def lower_softmax(ctx: Ctx, node) -> None:
    shape = ctx.shape(node.input[0])
    rank = len(shape)
    axis = ctx.g.attrs(node).get("axis", -1 if ctx.g.opset >= 13 else 1) % max(rank, 1)
    pre = None
    if ctx.g.opset < 13:  # older Softmax: over the 2-D view [prod(dims < axis), prod(dims >= axis)]
        pre, axis = (int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))), 1
    ctx.emit(isa.Softmax(node.output[0], ctx.operand(node.input[0]), axis, shape, pre))


def lower_concat(ctx: Ctx, node) -> None:
    out = node.output[0]
    rank = len(ctx.shape(out))
    axis = ctx.g.attrs(node)["axis"] % rank
    ctx.emit(isa.Concat(out, tuple(ctx.operand(i) for i in node.input), axis, _size(ctx, out)))


def lower_reshape(ctx: Ctx, node) -> None:
    """Flatten, Reshape, Squeeze, Unsqueeze: the data stays put, only its shape changes."""
    if not ctx.g.is_float(node.input[0]) and ctx.const(node.input[0]) is None:
        raise Unsupported("the device computes in float32 only")
    out = node.output[0]
    ctx.emit(isa.Move(out, ctx.operand(node.input[0]), ctx.shape(out)))


def lower_transpose(ctx: Ctx, node) -> None:
    rank = len(ctx.shape(node.input[0]))
    perm = tuple(ctx.g.attrs(node).get("perm", range(rank - 1, -1, -1)))
    out = node.output[0]
    ctx.emit(isa.Move(out, ctx.operand(node.input[0]), ctx.shape(out), perm=perm))


def lower_batchnorm(ctx: Ctx, node) -> None:
    """A BatchNormalization not folded into a preceding Conv/Gemm: per-channel
    ``(x - mean) * scale / sqrt(var + eps) + bias`` on the vector unit."""
    at = ctx.g.attrs(node)
    if at.get("training_mode", 0) or len([o for o in node.output if o]) != 1:
        raise Unsupported("training-mode BatchNormalization")
    x, scale, bias, mean, var = node.input[:5]
    sx = ctx.shape(x)
    cshape = (1, sx[1]) + (1,) * (len(sx) - 2)
    out, size = node.output[0], int(np.prod(sx))
    eps = at.get("epsilon", 1e-5)
    params = [ctx.const(i) for i in (scale, bias, mean, var)]
    if all(p is not None for p in params):
        sc, b, m, v = (p.astype(np.float64) for p in params)
        s = sc / np.sqrt(v + eps)
        t = ctx.tmp("bn")
        ctx.emit(isa.Binary("mul", t, x, ctx.pin_const(s.reshape(cshape)), size))
        ctx.emit(isa.Binary("add", out, t, ctx.pin_const((b - m * s).reshape(cshape)), size))
        return

    def chan(name: str) -> str:
        value = ctx.const(name)
        if value is not None:
            return ctx.pin_const(value.reshape(cshape))
        reg = ctx.tmp("chan")
        ctx.emit(isa.Move(reg, name, cshape))
        return reg

    sc, b, m, v = chan(scale), chan(bias), chan(mean), chan(var)
    c = sx[1]
    t = [ctx.tmp("bn") for _ in range(5)]
    ctx.emit(isa.Binary("add", t[0], v, ctx.pin_const(np.float32(eps)), c))
    ctx.emit(isa.Unary("rsqrt", t[1], t[0], c))
    ctx.emit(isa.Binary("mul", t[2], sc, t[1], c))
    ctx.emit(isa.Binary("sub", t[3], x, m, size))
    ctx.emit(isa.Binary("mul", t[4], t[3], t[2], size))
    ctx.emit(isa.Binary("add", out, t[4], b, size))


LOWERINGS = {
    "Relu": _unary("relu"), "Sigmoid": _unary("sigmoid"), "Tanh": _unary("tanh"), "Neg": _unary("neg"),
    "Identity": _unary("identity"), "Dropout": _unary("identity"),
    "Add": _binary("add"), "Sub": _binary("sub"), "Mul": _binary("mul"),
    "MaxPool": _pool("max"), "AveragePool": _pool("avg"),
    "GlobalAveragePool": _pool("avg", True), "GlobalMaxPool": _pool("max", True),
    "Flatten": lower_reshape, "Reshape": lower_reshape, "Squeeze": lower_reshape, "Unsqueeze": lower_reshape,
    "Transpose": lower_transpose, "BatchNormalization": lower_batchnorm, "Softmax": lower_softmax,
    "Concat": lower_concat,
}
