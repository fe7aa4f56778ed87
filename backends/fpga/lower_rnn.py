"""ONNX LSTM and GRU, unrolled over time onto MatMul and vector instructions.

The input projection of every time step is one MatMul (``T`` = steps x batch vectors:
the array streams them back to back); each step then needs only the recurrent
product ``h @ R`` (``T`` = batch) and a few vector instructions, as Brainwave ran its
GRUs and LSTMs. Supported: forward/reverse/bidirectional, layouts 0 and 1, initial
states, peepholes, GRU's ``linear_before_reset``, full-length ``sequence_lens``;
the default activations only (sigmoid, tanh, tanh); no ``clip``, no ``input_forget``.

Over several devices (``Ctx.slices`` > 1, constant weights) the hidden units are cut
into slices (``rowsplit.ranges``), Brainwave's way: slice j holds the rows of W and R
of every gate of its units, computes their gates and its part of h and c where they
are made, and each step's h (a GRU's r * h too) is gathered by every slice for its next
recurrent product (``rowsplit.gather``). One slice is today's lowering.
"""
from __future__ import annotations

import numpy as np

from backends.fpga import isa, rowsplit
from backends.fpga.lower_context import Ctx, Unsupported


class _Cell:
    """Emitters shared by both cells for one node (shapes fixed at compile time); the
    per-slice ones take and return one register per slice of the hidden units."""

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
        pinned = all(ctx.const(n) is not None for n in (self.w, self.r, self.b, self.p) if n)
        self.parts = rowsplit.ranges(self.hidden, ctx.slices) if pinned else [(0, self.hidden)]

    def size(self, cols: int) -> int:
        return self.batch * cols

    def tmp(self, hint: str) -> str:
        return self.ctx.tmp(f"{self.node.op_type.lower()}.{hint}")

    def emit(self, ins) -> str:
        self.ctx.emit(ins)
        return ins.dst

    def widths(self, gates: int = 1) -> list[int]:
        return [gates * (b - a) for a, b in self.parts]

    def rows(self, gates, j: int) -> np.ndarray:
        """The rows of W, R or B (gate-major) of ``gates`` for slice j's hidden units."""
        a, b = self.parts[j]
        return np.concatenate([np.arange(g * self.hidden + a, g * self.hidden + b) for g in gates])

    def weights(self, name: str, d: int, gates) -> list[dict]:
        """Each slice's rows of ``gates`` of ``name[d]`` as a MatMul weight (K, gates x units)."""
        value = self.ctx.const(name)
        if value is None:  # one slice: run-time weights, a contiguous range of gates
            return [self.weight(name, d, gates[0] * self.hidden, (gates[-1] + 1) * self.hidden)]
        return [dict(slot=self.ctx.pin_weights(value[d, self.rows(gates, j)].T[None], self.ctx.fmt(name),
                                               name if len(self.parts) == 1 else f"{name}[{a}:{b}]"))
                for j, (a, b) in enumerate(self.parts)]

    def weight(self, name: str, d: int, lo: int, hi: int) -> dict:
        """Rows ``lo:hi`` of the run-time weight ``name[d]`` (gates x K) as a MatMul weight (K, hi - lo)."""
        k = self.ctx.shape(name)[2]
        rows = self.ctx.shape(name)[1]
        part = self.emit(isa.Slice(self.tmp("w"), name, 0, d, d + 1, rows * k, True))
        part = self.emit(isa.Slice(self.tmp("w"), part, 1, lo, hi, (hi - lo) * k, True))
        return dict(wsrc=self.emit(isa.Move(self.tmp("wt"), part, (1, k, hi - lo), perm=(1, 0), pre=(hi - lo, k))))

    def biases(self, d: int, gates, plus) -> list[str]:
        """Each slice's ``B[d]`` rows of ``gates`` plus those of ``plus`` (None: nothing
        added to that gate), folded into one constant; or, at run time, one register."""
        value = self.ctx.const(self.b)
        if value is not None:
            extra = lambda j: np.concatenate([value[d, self.rows([p], j)] if p is not None  # noqa: E731
                                              else np.zeros(self.widths()[j], value.dtype) for p in plus])
            return [self.ctx.pin_const(value[d, self.rows(gates, j)] + extra(j)) for j in range(len(self.parts))]
        h = self.hidden
        row = self.emit(isa.Slice(self.tmp("b"), self.b, 0, d, d + 1, self.ctx.shape(self.b)[1], True))
        out = []
        for g, p in zip(gates, plus):
            v = self.emit(isa.Slice(self.tmp("b"), row, 1, g * h, (g + 1) * h, h, True))
            if p is not None:
                other = self.emit(isa.Slice(self.tmp("b"), row, 1, p * h, (p + 1) * h, h, True))
                v = self.emit(isa.Binary("add", self.tmp("b"), v, other, h))
            out.append(v)
        return [out[0] if len(out) == 1 else self.emit(isa.Concat(self.tmp("bias"), tuple(out), -1, len(out) * h))]

    def peepholes(self, d: int, i: int) -> list[str]:
        """Each slice's units of peephole ``i`` of ``P[d]`` (a constant)."""
        value = self.ctx.const(self.p)
        if value is None:
            raise Unsupported("peepholes that are not constant")
        h = self.hidden
        return [self.ctx.pin_const(value[d, i * h + a:i * h + b]) for a, b in self.parts]

    def state(self, name: str, d: int) -> tuple[str, list[str]]:
        """Initial state ``name[d]`` (1, batch, H), or zeros: whole, and each slice's part."""
        if not name:
            whole = self.ctx.pin_const(np.zeros((1, self.batch, self.hidden), np.float32))
        else:
            whole = self.emit(isa.Slice(self.tmp("s0"), self.ctx.operand(name), 0, d, d + 1,
                                        self.size(self.hidden), True))
        if len(self.parts) == 1:
            return whole, [whole]
        return whole, [self.emit(isa.Slice(self.tmp("s0"), whole, 2, a, b, self.size(b - a), self.batch == 1))
                       for a, b in self.parts]

    def inputs(self) -> str:
        """X as (steps, batch, K)."""
        if self.layout == 0:
            return self.x
        return self.emit(isa.Move(self.tmp("x"), self.x, (self.seq, self.batch, self.k), perm=(1, 0, 2)))

    def products(self, srcs: list[str], kws: list[dict], gates: int, t: int, k: int, fmt: str,
                 lead: tuple[int, ...], hint: str) -> list[str]:
        """One product's slices: ``srcs[j]`` (slice j's copy) times slice j's rows."""
        widths = self.widths(gates)
        shapes = [lead + (w,) for w in widths]
        if len(kws) == 1:
            return [self.emit(isa.MatMul(self.tmp(hint), srcs[0], fmt, 1, t, k, widths[0], out_shape=shapes[0],
                                         **kws[0]))]
        return rowsplit.product(self.ctx, srcs, [kw["slot"] for kw in kws], fmt, t, k, widths, shapes,
                                f"{self.node.op_type.lower()}.{hint}")

    def project(self, x: str, d: int, gates: int, biases: list[str] | None) -> list[str]:
        """All steps' input projections at once, per slice: (steps, batch, gates x units)."""
        mm = self.products([x] * len(self.parts), self.weights(self.w, d, range(gates)), gates, self.seq * self.batch,
                           self.k, self.ctx.fmt(self.w), (self.seq, self.batch), "xw")
        if biases is None:
            return mm
        return [self.emit(isa.Binary("add", self.tmp("xwb"), m, b, self.seq * self.size(w)))
                for m, b, w in zip(mm, biases, self.widths(gates))]

    def recur(self, hs: list[str], kws: list[dict], gates: int) -> list[str]:
        return self.products(hs, kws, gates, self.batch, self.hidden, self.ctx.fmt(self.r), (1, self.batch), "hr")

    def gather(self, parts: list[str]) -> list[str]:
        """Every slice's copy of the whole of ``parts`` (one slice: the part itself)."""
        return rowsplit.gather(self.ctx, parts, self.size(self.hidden))

    def whole(self, parts: list[str]) -> str:
        """``parts`` joined once (on the first slice's device)."""
        if len(parts) == 1:
            return parts[0]
        return self.emit(isa.Concat(self.tmp("whole"), tuple(parts), -1, self.size(self.hidden)))

    def step_input(self, xw: list[str], t: int, gates: int) -> list[str]:
        return [self.emit(isa.Slice(self.tmp("xt"), x, 0, t, t + 1, self.size(w), True))
                for x, w in zip(xw, self.widths(gates))]

    def gate(self, srcs: list[str], g: int, count: int = 1) -> list[str]:
        """Gates ``g .. g + count - 1`` of each slice's gate-major register."""
        return [self.emit(isa.Slice(self.tmp("g"), s, 2, g * w, (g + count) * w, self.size(count * w), self.batch == 1))
                for s, w in zip(srcs, self.widths())]

    def op(self, kind: str, a: list[str], b: list[str] | None = None, gates: int = 1) -> list[str]:
        ws = self.widths(gates)
        if b is None:
            return [self.emit(isa.Unary(kind, self.tmp(kind), x, self.size(w))) for x, w in zip(a, ws)]
        return [self.emit(isa.Binary(kind, self.tmp(kind), x, y, self.size(w))) for x, y, w in zip(a, b, ws)]

    def steps(self, d: int) -> list[int]:
        reverse = self.direction == "reverse" or (self.direction == "bidirectional" and d == 1)
        return list(range(self.seq))[::-1] if reverse else list(range(self.seq))

    def next_state(self, parts: list[str], last: bool) -> tuple[list[str], str]:
        """After a step: each slice's copy of the new state for the next step's products
        (none after the last), and the state whole (for Y)."""
        if last:
            return [], self.whole(parts)
        copies = self.gather(parts)
        return copies, copies[0]

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
    x = cell.inputs()
    ys, last_h, last_c = [], [], []
    for d in range(cell.dirs):
        bias = cell.biases(d, range(4), range(4, 8)) if cell.b else None
        xw = cell.project(x, d, 4, bias)
        rk = cell.weights(cell.r, d, range(4))
        peep = [cell.peepholes(d, i) for i in range(3)] if cell.p else None
        h_whole, h = cell.state(cell.h0, d)
        c = cell.state(cell.c0, d)[1]
        hfull, y, order = [h_whole] * len(cell.parts), [], cell.steps(d)
        for n, t in enumerate(order):
            g = cell.op("add", cell.step_input(xw, t, 4), cell.recur(hfull, rk, 4), gates=4)
            i, o, f, cc = (cell.gate(g, j) for j in range(4))  # ONNX order i, o, f, c
            if peep:
                i = cell.op("add", i, cell.op("mul", c, peep[0]))
                f = cell.op("add", f, cell.op("mul", c, peep[2]))
            i, f, cc = cell.op("sigmoid", i), cell.op("sigmoid", f), cell.op("tanh", cc)
            c = cell.op("add", cell.op("mul", f, c), cell.op("mul", i, cc))
            if peep:
                o = cell.op("add", o, cell.op("mul", c, peep[1]))
            h = cell.op("mul", cell.op("sigmoid", o), cell.op("tanh", c))
            hfull, whole = cell.next_state(h, n == len(order) - 1)
            y.append(whole)
        ys.append(y if order[0] == 0 else y[::-1])
        last_h.append(y[-1])  # the last step computed
        last_c.append(cell.whole(c))
    cell.finish(ys, last_h, last_c)


def lower_gru(ctx: Ctx, node) -> None:
    cell = _Cell(ctx, node, 3)
    lbr = ctx.g.attrs(node).get("linear_before_reset", 0)
    x = cell.inputs()
    ys, last_h = [], []
    for d in range(cell.dirs):
        # Rb of z and r always adds to Wb; Rb of h only without linear_before_reset.
        bias = cell.biases(d, range(3), (3, 4, None if lbr else 5)) if cell.b else None
        xw = cell.project(x, d, 3, bias)
        # With linear_before_reset every gate's recurrent product is of h itself: one
        # product of all three (as cuDNN runs it); without, h's is of r * h, after z and r.
        rall = cell.weights(cell.r, d, range(3)) if lbr else None
        rzr, rh = (None, None) if lbr else (cell.weights(cell.r, d, range(2)), cell.weights(cell.r, d, [2]))
        rbh = cell.biases(d, [5], [None]) if cell.b and lbr else None
        h_whole, h = cell.state(cell.h0, d)
        hfull, y, order = [h_whole] * len(cell.parts), [], cell.steps(d)
        for n, t in enumerate(order):
            xt = cell.step_input(xw, t, 3)
            hr = cell.recur(hfull, rall, 3) if lbr else None
            zr = cell.op("add", cell.gate(xt, 0, 2), cell.gate(hr, 0, 2) if lbr else cell.recur(hfull, rzr, 2),
                         gates=2)
            z, r = cell.op("sigmoid", cell.gate(zr, 0)), cell.op("sigmoid", cell.gate(zr, 1))
            if lbr:
                hh = cell.gate(hr, 2)
                if rbh:
                    hh = cell.op("add", hh, rbh)
                pre = cell.op("mul", r, hh)
            else:
                pre = cell.recur(cell.gather(cell.op("mul", r, h)), rh, 1)
            cand = cell.op("tanh", cell.op("add", cell.gate(xt, 2), pre))
            h = cell.op("add", cand, cell.op("mul", z, cell.op("sub", h, cand)))  # (1-z)*cand + z*h
            hfull, whole = cell.next_state(h, n == len(order) - 1)
            y.append(whole)
        ys.append(y if order[0] == 0 else y[::-1])
        last_h.append(y[-1])  # the last step computed
    cell.finish(ys, last_h, None)


LOWERINGS = {"LSTM": lower_lstm, "GRU": lower_gru}
