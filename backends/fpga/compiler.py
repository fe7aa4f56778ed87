"""ONNX model -> ``isa.Program``: lowering, host partitioning, weight pinning.

Nodes are lowered in topological order by the functions in ``lower_matrix``,
``lower_vector`` and ``lower_rnn`` (one table, ``LOWERINGS``). A lowering either emits
instructions or raises ``Unsupported``; such nodes run on the host: consecutive ones
become one ``HostCall`` partition (an ONNX sub-model run by onnxruntime), whose inputs
and outputs cross the host link. With ``strict`` the first one is an error instead.

Lowering knows no engine. Weights are pinned after it, once their total size is known,
for each matrix engine asked for: the systolic array's tiles (``HwConfig.weight_mem_bytes``)
or the matrix-vector unit's words (``MvuConfig.mem_words`` per tile engine), whose
matrices may be pinned over several devices (module ``partition``, fpga option ``devices``),
whole or with the model lowered again, its large products' rows cut into slices
(module ``rowsplit``).
A model that does not fit is refused with both sizes.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from backends.base import ModelLoadFailed
from backends.fpga import isa
from backends.fpga.graph import Graph, load_graph
from backends.fpga.lower_context import Ctx, Unsupported
from backends.fpga.lowerings import LOWERINGS
from backends.fpga.operands import encode_mvu_weights, encode_weights, tile_bytes, tile_count
from backends.fpga.options import FpgaOptions, hw_config, layer_format, mvu_config
from backends.fpga.partition import choose
from backends.fpga.rowsplit import receive_per_slice, split_products
from hw.config import HwConfig, MvuConfig


def _is_device_dtype(g: Graph, node) -> bool:
    names = [i for i in node.input if i and i not in g.consts] + [o for o in node.output if o]
    return all(g.is_float(n) for n in names)


def _reads(node) -> list[str]:
    """Every tensor ``node`` reads: its inputs, and what its subgraphs (a Loop's or Scan's
    body, an If's branches) take from the enclosing graph by name."""
    names = list(node.input)
    for attr in node.attribute:
        for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            inner = {i.name for i in sub.input} | {t.name for t in sub.initializer}
            for n in sub.node:
                names += [i for i in _reads(n) if i and i not in inner]
                inner |= set(n.output)
    return names


def _host_call(ctx: Ctx, nodes: list, parts: list, later: set[str]) -> isa.HostCall:
    g = ctx.g
    produced = {o for n in nodes for o in n.output if o}
    needed = [i for n in nodes for i in _reads(n) if i and i not in produced]
    srcs = tuple(dict.fromkeys(i for i in needed if i not in g.consts))
    inits = [onnx.numpy_helper.from_array(g.consts[i], i) for i in dict.fromkeys(needed) if i in g.consts]
    dsts = tuple(o for n in nodes for o in n.output if o in later)
    info = lambda n: helper.make_tensor_value_info(n, g.dtypes.get(n, 0), g.shapes.get(n))  # noqa: E731
    graph = helper.make_graph(nodes, f"host{len(parts)}", [info(i) for i in srcs], [info(o) for o in dsts], inits)
    model = helper.make_model(graph, opset_imports=list(g.model.opset_import), ir_version=g.model.ir_version)
    nbytes = lambda names: sum(4 * int(np.prod(g.shapes.get(n, (1,)))) for n in names)  # noqa: E731
    parts.append(model)
    return isa.HostCall(len(parts) - 1, srcs, dsts, nbytes(srcs), tuple(nbytes([d]) for d in dsts))


def _lower_all(ctx: Ctx, strict: bool) -> list:
    g, parts, pending, pending_at = ctx.g, [], [], 0
    for name in g.inputs:
        ctx.emit(isa.Recv(name, name, ctx.shape(name)))

    def flush(at: int, later_nodes) -> None:
        nonlocal pending
        if pending:
            later = {i for n in later_nodes for i in _reads(n)} | set(g.outputs)
            ctx.body.insert(at, _host_call(ctx, pending, parts, later))
            pending = []

    for index, node in enumerate(g.nodes):
        if id(node) in ctx.skip:
            continue
        mark = len(ctx.body)
        try:
            lower = LOWERINGS.get(node.op_type)
            if lower is None or node.domain not in ("", "ai.onnx"):
                raise Unsupported(f"op {node.op_type} is not in the fpga instruction set")
            if not _is_device_dtype(g, node):
                raise Unsupported("the device computes in float32 only")
            lower(ctx, node)
        except Unsupported as why:
            del ctx.body[mark:]
            if strict:
                raise ModelLoadFailed(
                    f"strict: node {node.name or '(unnamed)'!r} (op {node.op_type}) cannot run on the fpga: {why}"
                ) from None
            if not pending:
                pending_at = mark
            pending.append(node)
            continue
        flush(pending_at, g.nodes[index:])
    flush(len(ctx.body), [])
    for name in g.outputs:
        ctx.emit(isa.Send(ctx.operand(name), name, ctx.shape(name)))
    return parts


def _pin(ctx: Ctx, cfg: HwConfig) -> list[isa.PinWeights]:
    """Every weight matrix pinned in the systolic array's memory, or the model is refused."""
    tiles = sum(tile_count(cfg, *w.shape) for w, _ in ctx.weights.values())
    need = tile_bytes(cfg, tiles)
    if need > cfg.weight_mem_bytes:
        raise ModelLoadFailed(
            f"the model's weights need {need} bytes of on-chip weight memory ({tiles} tiles of "
            f"{cfg.rows}x{cfg.cols} at {cfg.weight_bits:g} bits per weight), but the array has "
            f"{cfg.weight_mem_bytes} bytes (fpga option weight_mem)")
    pins = [isa.PinWeights(slot, encode_weights(cfg, layer_format(fmt), w), fmt)
            for slot, (w, fmt) in ctx.weights.items()]
    return pins


def _mvu_pins(ctx: Ctx, cfg: MvuConfig) -> list[isa.PinWeights]:
    """Every weight matrix encoded for the MVU's tile engines (a row slice with its
    whole product's K-split), or the model is refused."""
    whole_n = {}
    for ins in ctx.body:
        if isinstance(ins, isa.MatMul) and (ins.k > cfg.max_k or ins.n > cfg.max_m):
            raise ModelLoadFailed(
                f"a {ins.k}x{ins.n} product is larger than the matrix-vector unit's buffers take "
                f"(K up to {cfg.max_k} inputs, N up to {cfg.max_m} outputs)")
        if isinstance(ins, isa.MatMul) and ins.slot is not None:
            whole_n[ins.slot] = ins.whole_n
    return [isa.PinWeights(slot, encode_mvu_weights(cfg, layer_format(fmt), w, whole_n.get(slot, 0)), fmt)
            for slot, (w, fmt) in ctx.weights.items()]


def _lowered(g: Graph, strict: bool, slices: int = 1) -> tuple[Ctx, list]:
    """The model lowered, its large products cut into ``slices`` row slices (``rowsplit``)."""
    ctx = Ctx(g, slices)
    parts = _lower_all(ctx, strict)
    if slices > 1:
        split_products(ctx)
        receive_per_slice(ctx)
    return ctx, parts


def compile_for(model: onnx.ModelProto, layer_formats: dict[str, str], opts: FpgaOptions,
                engines: tuple[str, ...]) -> dict[str, tuple[isa.Program, HwConfig | MvuConfig] | ModelLoadFailed]:
    """Lower ``model`` once, then pin it for each engine ("systolic", "mvu"): each
    engine's program and config, or why it cannot take the model."""
    g = load_graph(model, layer_formats)
    try:
        formats = [layer_format(f) for f in g.formats.values()]
    except ValueError as exc:
        raise ModelLoadFailed(str(exc)) from exc
    configs = {"systolic": hw_config, "mvu": mvu_config}
    whole = _lowered(g, opts.strict)
    out: dict = {}
    for engine in engines:
        try:
            cfg = configs[engine](opts, formats)
            if isinstance(cfg, MvuConfig):  # over several devices: whole matrices or row slices
                def variant(k: int, cfg=cfg):
                    ctx, parts = whole if k == 1 else _lowered(g, opts.strict, k)
                    return ctx, parts, _mvu_pins(ctx, cfg)
                ctx, parts, pins, assignment = choose(cfg, opts.devices, variant, opts.split)
            else:
                (ctx, parts), assignment = whole, None
                pins = _pin(ctx, cfg)
        except ModelLoadFailed as exc:
            out[engine] = exc
            continue
        out[engine] = (isa.Program(pins + list(ctx.consts_pinned.values()), ctx.body, parts, {n: n for n in g.inputs},
                                   {n: n for n in g.outputs}, assignment), cfg)
    return out
