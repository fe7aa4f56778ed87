"""One large product's output rows split over devices (issue 18): the emitters and the pass.

A matrix-vector product's outputs (the MVU's matrix rows) are cut into ``slices``
ranges; slice j's rows are pinned on device j, which computes its part of the output.
Splitting N (not K) keeps every output's whole sum over K on one device, so no partial
sums cross the link and nothing is reduced: the parts are only concatenated, and
where the next consumer is again an element-wise chain (a bias, an activation, an RNN's
gates) it runs on each part where it was made, so only the vectors the next products
read cross the link, as an all-gather (every device assembles its own copy).

Bit-exactness with one big device: the MVU's accumulator exponent is chosen over the
whole product (``hw.golden.acc_exp_rule``: its finest nonzero block and its peak over
every output), so a slice alone would pick its own and round differently. Each slice
first computes those two figures for its rows (``isa.AccStats``); the devices exchange
them (16 bytes a vector) and each accumulates at the whole's exponent. Each slice's
weights keep the whole product's split of the tile engines over K (``whole_n``), so a
saturating sum adds in the whole's order too.

Two users: ``lower_rnn`` cuts an LSTM's or GRU's hidden units into slices, each with
all its gates (Brainwave's way: the gate arithmetic stays local, each step gathers h),
and ``split_products`` cuts the other pinned products after lowering (an MLP's layers),
carrying the element-wise instructions after each one through per part.
"""
from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from backends.fpga import isa
from backends.fpga.cycles import reads
from backends.fpga.lower_context import Ctx

# Slice edges fall on multiples of this many outputs: a whole number of every block
# format's blocks (MSFP's 16, MX's 32) and of the engines' exponent blocks, so a part
# sent ahead of a product is exactly the product's own encoding of those elements.
GRANULE = 32


def ranges(n: int, slices: int) -> list[tuple[int, int]]:
    """``n`` outputs as up to ``slices`` consecutive ranges of whole granules, as even as possible."""
    units = -(-n // GRANULE)
    count = min(slices, units)
    edges = [min(n, GRANULE * (units * j // count)) for j in range(count + 1)]
    return list(zip(edges, edges[1:]))


def product(ctx: Ctx, srcs: list[str], slots: list[str], fmt: str, t: int, k: int, widths: list[int],
            out_shapes: list[tuple[int, ...]], hint: str) -> list[str]:
    """The row slices of one pinned product (``slots[j]``: slice j's rows, read from
    ``srcs[j]``, slice j's copy of the input): each slice's statistics, then its part."""
    if len(slots) == 1:
        dst = ctx.tmp(hint)
        ctx.emit(isa.MatMul(dst, srcs[0], fmt, 1, t, k, widths[0], out_shape=out_shapes[0], slot=slots[0]))
        return [dst]
    stats = [ctx.tmp("accstats") for _ in slots]
    for j, (s, src, slot) in enumerate(zip(stats, srcs, slots)):
        ctx.on_slice[s] = ctx.slot_slice[slot] = j
        ctx.emit(isa.AccStats(s, src, slot, fmt, t, k))
    dsts = [ctx.tmp(hint) for _ in slots]
    for dst, src, slot, w, shape in zip(dsts, srcs, slots, widths, out_shapes):
        ctx.emit(isa.MatMul(dst, src, fmt, 1, t, k, w, out_shape=shape, slot=slot, acc=tuple(stats),
                            whole_n=sum(widths)))
    return dsts


def gather(ctx: Ctx, parts: list[str], size: int) -> list[str]:
    """Every slice's own copy of ``parts`` joined along the last axis (an all-gather):
    the copy slice j's products read."""
    if len(parts) == 1:
        return parts
    copies = [ctx.tmp("gather") for _ in parts]
    for j, dst in enumerate(copies):
        ctx.on_slice[dst] = j
        ctx.emit(isa.Concat(dst, tuple(parts), -1, size))
    return copies


def _splittable(ctx: Ctx, ins) -> bool:
    return (isinstance(ins, isa.MatMul) and ins.slot is not None and not ins.whole_n and ins.groups == 1
            and ins.src_bcast is None and bool(ins.out_shape) and ins.out_shape[-1] == ins.n
            and len(ranges(ins.n, ctx.slices)) > 1)


class _Parts(NamedTuple):
    regs: list[str]  # each slice's part
    ranges: list[tuple[int, int]]  # the outputs (last axis) each holds
    rows: int  # elements per output

    def size(self, j: int | None = None) -> int:
        a, b = (self.ranges[0][0], self.ranges[-1][1]) if j is None else self.ranges[j]
        return self.rows * (b - a)


def split_products(ctx: Ctx) -> None:
    """Rewrite ``ctx.body``: every pinned product large enough is cut into ``ctx.slices``
    row slices, what follows it element-wise runs per part, and a consumer that is not
    element-wise reads the parts gathered (a product: each slice its own copy; anything
    else: one copy, on slice 0's device)."""
    body, ctx.body = ctx.body, []
    parts: dict[str, _Parts] = {}  # a split register -> its parts
    copies: dict[str, list[str]] = {}  # a split register -> every slice's gathered copy
    joined: set[str] = set()  # split registers also made whole under their own name

    def whole(reg: str) -> None:
        if reg in parts and reg not in joined:
            joined.add(reg)
            ctx.emit(isa.Concat(reg, tuple(parts[reg].regs), -1, parts[reg].size()))

    for ins in body:
        if _splittable(ctx, ins):
            w, fmt = ctx.weights.pop(ins.slot)
            rs = ranges(ins.n, ctx.slices)
            if ins.src in parts and ins.src not in copies:
                copies[ins.src] = gather(ctx, parts[ins.src].regs, parts[ins.src].size())
            if ins.src not in copies:
                whole(ins.src)
            srcs = copies.get(ins.src, [ins.src] * len(rs))
            slots = [ctx.pin_weights(w[:, :, a:b], fmt, f"{ins.slot[2:]}[{a}:{b}]") for a, b in rs]
            outs = product(ctx, srcs, slots, fmt, ins.t, ins.k, [b - a for a, b in rs],
                           [ins.out_shape[:-1] + (b - a,) for a, b in rs], "rows")
            parts[ins.dst] = _Parts(outs, rs, ins.t)
            continue
        carried = _per_part(ctx, ins, parts)
        if carried is not None:
            parts[ins.dst] = carried
            continue
        for reg in reads(ins):
            whole(reg)
        ctx.emit(ins)


def receive_per_slice(ctx: Ctx) -> None:
    """A request input that several slices' products read is sent by the host to each of
    their devices (one ``Recv`` each, over each device's own host link) rather than to
    one device and on from there over the network."""
    slice_of = lambda ins: ctx.on_slice.get(ins.dst) if isinstance(ins, isa.AccStats) else (  # noqa: E731
        ctx.slot_slice.get(ins.slot) if isinstance(ins, isa.MatMul) else None)
    inputs = {ins.dst: ins for ins in ctx.body if isinstance(ins, isa.Recv)}
    slices = {}  # input -> the slices reading it, in order
    for ins in ctx.body:
        j = slice_of(ins)
        if j is not None and ins.src in inputs:
            slices.setdefault(ins.src, dict.fromkeys([]))[j] = None
    copies = {(reg, j): f"{reg}@{j}" for reg, js in slices.items() if len(js) > 1 for j in list(js)[1:]}
    body = []
    for ins in ctx.body:
        j = slice_of(ins)
        if (getattr(ins, "src", None), j) in copies:
            ins = replace(ins, src=copies[(ins.src, j)])
        body.append(ins)
        if isinstance(ins, isa.Recv):
            for j in list(slices.get(ins.dst, ()))[1:]:
                ctx.on_slice[copies[(ins.dst, j)]] = j
                body.append(replace(ins, dst=copies[(ins.dst, j)]))
    ctx.body = body


def _per_part(ctx: Ctx, ins, parts: dict[str, _Parts]) -> _Parts | None:
    """``ins`` run on each part of a split operand, when it is element-wise along the
    split axis (an activation, a bias or scale, a reshape that keeps the last axis): the
    parts of its result; else None."""
    if isinstance(ins, isa.Unary) and ins.src in parts:
        p = parts[ins.src]
        return p._replace(regs=[_emit(ctx, isa.Unary(ins.kind, ctx.tmp(ins.kind), r, p.size(j)))
                                for j, r in enumerate(p.regs)])
    if isinstance(ins, isa.Move) and ins.perm is None and ins.src in parts:
        p = parts[ins.src]
        if ins.shape[-1] != p.ranges[-1][1]:
            return None
        return p._replace(regs=[_emit(ctx, isa.Move(ctx.tmp("move"), r, ins.shape[:-1] + (b - a,)))
                                for r, (a, b) in zip(p.regs, p.ranges)])
    if not isinstance(ins, isa.Binary) or not (ins.a in parts or ins.b in parts):
        return None
    p = parts[ins.a] if ins.a in parts else parts[ins.b]
    sides = []
    for reg in (ins.a, ins.b):
        if reg in parts:
            if parts[reg].ranges != p.ranges or parts[reg].rows != p.rows:
                return None
            sides.append(parts[reg].regs)
        else:
            const = ctx.consts_pinned.get(reg)
            n = p.ranges[-1][1]
            if const is None or const.value.size not in (1, n) or (const.value.ndim and const.value.shape[-1] != n
                                                                   and const.value.size != 1):
                return None
            v = const.value
            sides.append([reg] * len(p.regs) if v.size == 1 else
                         [ctx.pin_const(v[..., a:b]) for a, b in p.ranges])
    return p._replace(regs=[_emit(ctx, isa.Binary(ins.kind, ctx.tmp(ins.kind), a, b, p.size(j)))
                            for j, (a, b) in enumerate(zip(*sides))])


def _emit(ctx: Ctx, ins) -> str:
    ctx.emit(ins)
    return ins.dst
