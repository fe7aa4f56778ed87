"""ONNX LSTM and GRU, unrolled over time onto MatMul and vector instructions.

The input projection of every time step is one MatMul (``T`` = steps x batch vectors:
the array streams them back to back); each step then needs only the recurrent
product ``h @ R`` (``T`` = batch) and a few vector instructions, as Brainwave ran its
GRUs and LSTMs. Supported: forward/reverse/bidirectional, layouts 0 and 1, initial
states, peepholes, GRU's ``linear_before_reset``, full-length ``sequence_lens``;
the default activations only (sigmoid, tanh, tanh); no ``clip``, no ``input_forget``.
"""
from __future__ import annotations

import numpy as np

from backends.fpga import isa
from backends.fpga.lower_context import Ctx, Unsupported


class _Cell:
    """Emitters shared by both cells for one node (shapes fixed at compile time)."""

    def __init__(self, ctx: Ctx, node, gates: int):
        self.ctx, self.node = ctx, node
        at = ctx.g.attrs(node)
        if at.get("clip") is not None or at.get("input_forget", 0):
            raise Unsupported("clip / input_forget")
        acts = [a.decode() if isinstance(a, bytes) else a for a in at.get("activations", [])]
        if any(a.lower() != d for a, d in zip(acts, ["sigmoid", "tanh", "tanh"] * 2)):
            raise Unsupported(f"activations {acts} (only the defaults)")
        self.layout = at.get("layout", 0)
        ins = list(node.input) + [""] * 8
        self.x, self.w, self.r, self.b, self.lens = ins[:5]
        self.h0, self.c0, self.p = ins[5], ins[6], ins[7]
        sx = ctx.shape(self.x)
        self.seq, self.batch = (sx[0], sx[1]) if self.layout == 0 else (sx[1], sx[0])
        self.k = sx[2]
        self.hidden = ctx.shape(self.r)[-1]
        self.dirs = ctx.shape(self.w)[0]
        self.direction = at.get("direction", b"forward")
        self.direction = self.direction.decode() if isinstance(self.direction, bytes) else self.direction
        lens = ctx.const(self.lens)
        if self.lens and (lens is None or np.any(lens != self.seq)):
            raise Unsupported("sequence_lens shorter than the sequence (or not constant)")
        if ctx.shape(self.w)[1] != gates * self.hidden:
            raise Unsupported("unexpected weight shape")

    def size(self, cols: int) -> int:
        return self.batch * cols

    def tmp(self, hint: str) -> str:
        return self.ctx.tmp(f"{self.node.op_type.lower()}.{hint}")

    def emit(self, ins) -> str:
        self.ctx.emit(ins)
        return ins.dst

    def weight(self, name: str, d: int, lo: int, hi: int) -> dict:
        """Rows ``lo:hi`` of ``name[d]`` (gates x K) as a MatMul weight (K, hi - lo)."""
        value = self.ctx.const(name)
        if value is not None:
            return dict(slot=self.ctx.pin_weights(value[d, lo:hi].T[None], self.ctx.fmt(name), name))
        k = self.ctx.shape(name)[2]
        rows = self.ctx.shape(name)[1]
        part = self.emit(isa.Slice(self.tmp("w"), name, 0, d, d + 1, rows * k, True))
        part = self.emit(isa.Slice(self.tmp("w"), part, 1, lo, hi, (hi - lo) * k, True))
        return dict(wsrc=self.emit(isa.Move(self.tmp("wt"), part, (1, k, hi - lo), perm=(1, 0), pre=(hi - lo, k))))

    def vec(self, name: str, d: int, lo: int, hi: int, plus: tuple[int, int] | None = None) -> str:
        """``name[d, lo:hi]`` (+ ``name[d, plus]``) as a register; a constant is folded."""
        value = self.ctx.const(name)
        if value is not None:
            v = value[d, lo:hi] + (value[d, plus[0]:plus[1]] if plus else 0)
            return self.ctx.pin_const(v)
        row = self.emit(isa.Slice(self.tmp("b"), name, 0, d, d + 1, self.ctx.shape(name)[1], True))
        out = self.emit(isa.Slice(self.tmp("b"), row, 1, lo, hi, hi - lo, True))
        if plus:
            other = self.emit(isa.Slice(self.tmp("b"), row, 1, plus[0], plus[1], hi - lo, True))
            out = self.emit(isa.Binary("add", self.tmp("b"), out, other, hi - lo))
        return out

    def state(self, name: str, d: int) -> str:
        """Initial state ``name[d]`` (1, batch, H), or zeros."""
        if not name:
            return self.ctx.pin_const(np.zeros((1, self.batch, self.hidden), np.float32))
        return self.emit(isa.Slice(self.tmp("s0"), self.ctx.operand(name), 0, d, d + 1, self.size(self.hidden), True))

    def inputs(self) -> str:
        """X as (steps, batch, K)."""
        if self.layout == 0:
            return self.x
        return self.emit(isa.Move(self.tmp("x"), self.x, (self.seq, self.batch, self.k), perm=(1, 0, 2)))

    def project(self, x: str, d: int, width: int, bias: str | None) -> str:
        """All steps' input projections at once: (steps, batch, width)."""
        kw = self.weight(self.w, d, 0, width)
        mm = self.emit(isa.MatMul(self.tmp("xw"), x, self.ctx.fmt(self.w), 1, self.seq * self.batch, self.k,
                                  width, out_shape=(self.seq, self.batch, width), **kw))
        if bias is None:
            return mm
        return self.emit(isa.Binary("add", self.tmp("xwb"), mm, bias, self.seq * self.size(width)))

    def recur(self, h: str, kw: dict, width: int) -> str:
        return self.emit(isa.MatMul(self.tmp("hr"), h, self.ctx.fmt(self.r), 1, self.batch, self.hidden, width,
                                    out_shape=(1, self.batch, width), **kw))

    def gate(self, src: str, lo: int, hi: int) -> str:
        return self.emit(isa.Slice(self.tmp("g"), src, 2, lo, hi, self.size(hi - lo), self.batch == 1))

    def op(self, kind: str, a: str, b: str | None = None) -> str:
        n = self.size(self.hidden)
        if b is None:
            return self.emit(isa.Unary(kind, self.tmp(kind), a, n))
        return self.emit(isa.Binary(kind, self.tmp(kind), a, b, n))

    def steps(self, d: int) -> list[int]:
        reverse = self.direction == "reverse" or (self.direction == "bidirectional" and d == 1)
        return list(range(self.seq))[::-1] if reverse else list(range(self.seq))

    def finish(self, ys: list[list[str]], last: list[str], cells: list[str] | None) -> None:
        """Write Y (steps, dirs, batch, H), Y_h and (LSTM) Y_c in the node's layout."""
        outs = list(self.node.output) + ["", ""]
        hsz, n = self.hidden, self.batch * self.hidden
        per_dir = [self.emit(isa.Concat(self.tmp("y"), tuple(y), 0, self.seq * n)) for y in ys]
        finals = [(outs[1], last)] + ([(outs[2], cells)] if cells else [])
        if outs[0]:
            stacked = [self.emit(isa.Move(self.tmp("y"), y, (self.seq, 1, self.batch, hsz))) for y in per_dir]
            y = stacked[0] if len(stacked) == 1 else self.emit(
                isa.Concat(self.tmp("y"), tuple(stacked), 1, self.dirs * self.seq * n))
            shape = self.ctx.shape(outs[0])
            perm = None if self.layout == 0 else (2, 0, 1, 3)
            self.emit(isa.Move(outs[0], y, shape, perm=perm))
        for name, regs in finals:
            if not name:
                continue
            y = regs[0] if len(regs) == 1 else self.emit(isa.Concat(self.tmp("yh"), tuple(regs), 0, self.dirs * n))
            perm = None if self.layout == 0 else (1, 0, 2)
            self.emit(isa.Move(name, y, self.ctx.shape(name), perm=perm))


def lower_lstm(ctx: Ctx, node) -> None:
    cell = _Cell(ctx, node, 4)
    hs = cell.hidden
    x = cell.inputs()
    ys, last_h, last_c = [], [], []
    for d in range(cell.dirs):
        bias = cell.vec(cell.b, d, 0, 4 * hs, (4 * hs, 8 * hs)) if cell.b else None
        xw = cell.project(x, d, 4 * hs, bias)
        rk = cell.weight(cell.r, d, 0, 4 * hs)
        peep = [cell.vec(cell.p, d, i * hs, (i + 1) * hs) for i in range(3)] if cell.p else None
        h, c = cell.state(cell.h0, d), cell.state(cell.c0, d)
        y = []
        for t in cell.steps(d):
            xt = cell.emit(isa.Slice(cell.tmp("xt"), xw, 0, t, t + 1, cell.size(4 * hs), True))
            g = cell.emit(isa.Binary("add", cell.tmp("gates"), xt, cell.recur(h, rk, 4 * hs), cell.size(4 * hs)))
            i, o, f, cc = (cell.gate(g, j * hs, (j + 1) * hs) for j in range(4))  # ONNX order i, o, f, c
            if peep:
                i = cell.op("add", i, cell.op("mul", c, peep[0]))
                f = cell.op("add", f, cell.op("mul", c, peep[2]))
            i, f, cc = cell.op("sigmoid", i), cell.op("sigmoid", f), cell.op("tanh", cc)
            c = cell.op("add", cell.op("mul", f, c), cell.op("mul", i, cc))
            if peep:
                o = cell.op("add", o, cell.op("mul", c, peep[1]))
            h = cell.op("mul", cell.op("sigmoid", o), cell.op("tanh", c))
            y.append(h)
        ys.append(y if cell.steps(d)[0] == 0 else y[::-1])
        last_h.append(h)
        last_c.append(c)
    cell.finish(ys, last_h, last_c)


def lower_gru(ctx: Ctx, node) -> None:
    cell = _Cell(ctx, node, 3)
    hs = cell.hidden
    lbr = ctx.g.attrs(node).get("linear_before_reset", 0)
    x = cell.inputs()
    ys, last_h = [], []
    for d in range(cell.dirs):
        bias = None
        if cell.b:  # Rb of z and r always adds to Wb; Rb of h only without linear_before_reset
            zr = cell.vec(cell.b, d, 0, 2 * hs, (3 * hs, 5 * hs))
            hb = cell.vec(cell.b, d, 2 * hs, 3 * hs, None if lbr else (5 * hs, 6 * hs))
            bias = cell.emit(isa.Concat(cell.tmp("bias"), (zr, hb), -1, 3 * hs))
        xw = cell.project(x, d, 3 * hs, bias)
        # With linear_before_reset every gate's recurrent product is of h itself: one
        # product of all three (as cuDNN runs it); without, h's is of r * h, after z and r.
        rall = cell.weight(cell.r, d, 0, 3 * hs) if lbr else None
        rzr, rh = (None, None) if lbr else (cell.weight(cell.r, d, 0, 2 * hs), cell.weight(cell.r, d, 2 * hs, 3 * hs))
        rbh = cell.vec(cell.b, d, 5 * hs, 6 * hs) if cell.b and lbr else None
        h = cell.state(cell.h0, d)
        y = []
        for t in cell.steps(d):
            xt = cell.emit(isa.Slice(cell.tmp("xt"), xw, 0, t, t + 1, cell.size(3 * hs), True))
            hr = cell.recur(h, rall, 3 * hs) if lbr else None
            zr = cell.emit(isa.Binary("add", cell.tmp("zr"), cell.gate(xt, 0, 2 * hs),
                                      cell.gate(hr, 0, 2 * hs) if lbr else cell.recur(h, rzr, 2 * hs),
                                      cell.size(2 * hs)))
            z, r = cell.op("sigmoid", cell.gate(zr, 0, hs)), cell.op("sigmoid", cell.gate(zr, hs, 2 * hs))
            if lbr:
                hh = cell.gate(hr, 2 * hs, 3 * hs)
                if rbh:
                    hh = cell.op("add", hh, rbh)
                pre = cell.op("mul", r, hh)
            else:
                pre = cell.recur(cell.op("mul", r, h), rh, hs)
            cand = cell.op("tanh", cell.op("add", cell.gate(xt, 2 * hs, 3 * hs), pre))
            h = cell.op("add", cand, cell.op("mul", z, cell.op("sub", h, cand)))  # (1-z)*cand + z*h
            y.append(h)
        ys.append(y if cell.steps(d)[0] == 0 else y[::-1])
        last_h.append(h)
    cell.finish(ys, last_h, None)


LOWERINGS = {"LSTM": lower_lstm, "GRU": lower_gru}
