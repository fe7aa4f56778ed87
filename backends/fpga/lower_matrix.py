"""Lowering of the matrix-unit ops: Gemm, MatMul, Conv (im2col), with BatchNorm folded.

Each lowering checks everything first and raises ``Unsupported`` before emitting, so
a refused node leaves no instructions behind (the compiler also rolls back).
"""
from __future__ import annotations

import numpy as np

from backends.fpga import isa
from backends.fpga.lower_context import Ctx, Unsupported
from backends.fpga.geometry import windows


def _bias_add(ctx: Ctx, cur: str, bias, shape, dst: str) -> str:
    """``dst = cur + bias`` (bias: a constant array, or a register name)."""
    reg = ctx.pin_const(bias) if isinstance(bias, np.ndarray) else bias
    ctx.emit(isa.Binary("add", dst, cur, reg, int(np.prod(shape))))
    return dst


def lower_gemm(ctx: Ctx, node) -> None:
    a, b = node.input[0], node.input[1]
    c = node.input[2] if len(node.input) > 2 and node.input[2] else None
    at = ctx.g.attrs(node)
    alpha, beta = at.get("alpha", 1.0), at.get("beta", 1.0)
    ta, tb = at.get("transA", 0), at.get("transB", 0)
    if ctx.const(a) is not None:
        raise Unsupported("a constant first operand (the array streams activations)")
    sa, sb = ctx.shape(a), ctx.shape(b)
    m, k = (sa[1], sa[0]) if ta else sa
    n = sb[0] if tb else sb[1]
    out = node.output[0]
    wconst, cconst = ctx.const(b), ctx.const(c)
    src = a
    if ta:
        src = ctx.tmp("At")
        ctx.emit(isa.Move(src, a, (m, k), perm=(1, 0)))
    bias = None if c is None else (beta * cconst.astype(np.float64) if cconst is not None else c)
    if wconst is not None:
        w = (wconst.T if tb else wconst).astype(np.float64) * alpha
        bn = ctx.find_bn(out) if not isinstance(bias, str) else None
        if bn:
            node_bn, s, shift = bn
            w = w * s[None, :]
            bias = (0.0 if bias is None else bias) * s + shift
            out = node_bn.output[0]
            ctx.skip.add(id(node_bn))
        kw = dict(slot=ctx.pin_weights(w[None], ctx.fmt(b), b))
    else:
        wreg = b
        if tb:
            wreg = ctx.tmp("Bt")
            ctx.emit(isa.Move(wreg, b, (1, k, n), perm=(1, 0)))
        kw = dict(wsrc=wreg)
    fmt = ctx.fmt(b if wconst is not None else None)
    cur = ctx.tmp("gemm")
    ctx.emit(isa.MatMul(cur, src, fmt, 1, m, k, n, out_shape=(m, n), **kw))
    if wconst is None and alpha != 1.0:
        nxt = ctx.tmp("alpha")
        ctx.emit(isa.Binary("mul", nxt, cur, ctx.pin_const(np.float32(alpha)), m * n))
        cur = nxt
    if isinstance(bias, str) and beta != 1.0:
        scaled = ctx.tmp("beta")
        ctx.emit(isa.Binary("mul", scaled, bias, ctx.pin_const(np.float32(beta)), int(np.prod(ctx.shape(c)))))
        bias = scaled
    if bias is None:
        ctx.emit(isa.Move(out, cur, (m, n)))
    else:
        _bias_add(ctx, cur, bias, (m, n), out)


def lower_matmul(ctx: Ctx, node) -> None:
    a, b = node.input
    if ctx.const(a) is not None:
        raise Unsupported("a constant first operand (the array streams activations)")
    sa, sb, so = ctx.shape(a), ctx.shape(b), ctx.shape(node.output[0])
    a2 = sa if len(sa) > 1 else (1,) + sa
    b2 = sb if len(sb) > 1 else sb + (1,)
    k, n = b2[-2], b2[-1]
    bcast = dict(src_bcast=None, w_bcast=None)
    if len(b2) == 2:  # one matrix for every row of A
        g, t = 1, int(np.prod(a2[:-1]))
    else:
        try:
            batch = tuple(np.broadcast_shapes(a2[:-2], b2[:-2]))
        except ValueError:
            raise Unsupported(f"MatMul shapes {sa} x {sb} do not broadcast") from None
        g, t = int(np.prod(batch)), a2[-2]
        if tuple(a2[:-2]) != batch:  # the same vectors streamed again for each batch entry
            bcast["src_bcast"] = (a2, batch + a2[-2:])
        if tuple(b2[:-2]) != batch:
            bcast["w_bcast"] = (b2, batch + b2[-2:])
    wconst = ctx.const(b)
    if wconst is not None:
        w = np.broadcast_to(wconst.astype(np.float64).reshape(b2), (b2 if len(b2) == 2 else batch + b2[-2:]))
        kw = dict(slot=ctx.pin_weights(w.reshape(g, k, n), ctx.fmt(b), b), src_bcast=bcast["src_bcast"])
    else:
        kw = dict(wsrc=b, **bcast)
    ctx.emit(isa.MatMul(node.output[0], a, ctx.fmt(b if wconst is not None else None), g, t, k, n,
                        out_shape=so, **kw))


def conv_geometry(ctx: Ctx, node) -> isa.ConvGeometry:
    at = ctx.g.attrs(node)
    sx, sw = ctx.shape(node.input[0]), ctx.shape(node.input[1])
    nd = len(sx) - 2
    if nd < 1:
        raise Unsupported(f"input of rank {len(sx)}")
    kernel = tuple(at.get("kernel_shape", sw[2:]))
    strides = tuple(at.get("strides", (1,) * nd))
    dil = tuple(at.get("dilations", (1,) * nd))
    groups = at.get("group", 1)
    if sx[1] % groups or sw[0] % groups or sw[1] != sx[1] // groups:
        raise Unsupported(f"inconsistent group count {groups}")
    pads, out, _ = windows(sx[2:], kernel, strides, dil, at.get("pads"), at.get("auto_pad", "NOTSET"))
    return isa.ConvGeometry(sx, kernel, strides, pads, dil, groups, out)


def lower_conv(ctx: Ctx, node) -> None:
    x, w = node.input[0], node.input[1]
    b = node.input[2] if len(node.input) > 2 and node.input[2] else None
    geom = conv_geometry(ctx, node)
    sw = ctx.shape(w)
    n_img, o, g = geom.in_shape[0], sw[0], geom.groups
    og, kg, p = o // g, geom.patch, int(np.prod(geom.out_spatial))
    out_shape = (n_img, o) + geom.out_spatial
    out = node.output[0]
    wconst, bconst = ctx.const(w), ctx.const(b)
    bias = None if b is None else (bconst.astype(np.float64) if bconst is not None else b)
    cols = ctx.tmp("im2col")
    ctx.emit(isa.Im2Col(cols, x, geom))
    if wconst is not None:
        wm = wconst.astype(np.float64).reshape(g, og, kg).transpose(0, 2, 1)
        bn = ctx.find_bn(out) if not isinstance(bias, str) else None
        if bn:
            node_bn, s, shift = bn
            wm = wm * s.reshape(g, 1, og)
            bias = (0.0 if bias is None else bias) * s + shift
            out = node_bn.output[0]
            ctx.skip.add(id(node_bn))
        kw = dict(slot=ctx.pin_weights(wm, ctx.fmt(w), w))
    else:
        wreg = ctx.tmp("Wt")
        ctx.emit(isa.Move(wreg, w, (g, kg, og), perm=(0, 2, 1), pre=(g, og, kg)))
        kw = dict(wsrc=wreg)
    mm = ctx.tmp("conv")
    ctx.emit(isa.MatMul(mm, cols, ctx.fmt(w if wconst is not None else None), g, n_img * p, kg, og,
                        out_shape=(g, n_img, p, og), **kw))
    nchw = out if bias is None else ctx.tmp("nchw")
    ctx.emit(isa.Move(nchw, mm, out_shape, perm=(1, 0, 3, 2)))
    if bias is not None:
        bshape = (1, o) + (1,) * len(geom.out_spatial)
        if isinstance(bias, str):
            breg = ctx.tmp("bias")
            ctx.emit(isa.Move(breg, bias, bshape))
            bias = breg
        else:
            bias = bias.reshape(bshape)
        _bias_add(ctx, nchw, bias, out_shape, out)


LOWERINGS = {"Gemm": lower_gemm, "MatMul": lower_matmul, "Conv": lower_conv}
