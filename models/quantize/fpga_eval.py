"""Running a quantised model as the fpga backend computes it, to score it there.

onnxruntime runs the float graph; :func:`quantize_activations` quantises the input of
every Conv/MatMul/Gemm whose weight has a narrow format (``bwserve.layer_formats``), as
the FPGA golden model does. The graph is cut at those inputs ("taps"): one session runs
from the model's input and the taps already quantised up to the next tap, numpy
quantises that tensor for a chunk of samples at once, and a later session reads the
quantised copy. Each sample still runs batch 1, as the server runs it.

A convolution's activations are blocked along its im2col patch (input channel, then
kernel offset: the order a weight ``[O, C/G, *kernel]`` flattens in), not along an axis
of its input. So a tapped Conv becomes two: a Conv with one-hot kernels whose output
channels are the patches (each copies one input value, exactly), and a 1x1 Conv of the
same weights on the quantised patches.

Not modelled, all far below a narrow format's own error: the device also rounds the
operands of fp32 and fp16 layers to its array's 16-bit mantissas in blocks (within
2**-15 of each block's largest value; ``quantize_activations`` leaves fp32 alone and
rounds fp16 to half), re-encodes MX minifloat elements the same way, and accumulates in
wide fixed point rather than float32. For integer block formats the scores equal the
fpga backend's outputs up to float32 rounding (``tests/quantize/test_auto_fpga.py``).
"""
from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from models.quantize.activations import quantize_activations
from models.quantize.export import METADATA_FORMATS
from models.quantize.formats import Format, parse_format
from models.quantize.onnx_io import run, session

MATRIX_OPS = ("Conv", "MatMul", "Gemm")
# Samples quantised together: amortises numpy's cost per call, and bounds memory (a
# conv's patches are its input times the kernel size, quantised in float64).
CHUNK = 256


@dataclass(frozen=True, slots=True)
class Tap:
    """A matrix op's input, quantised between two sessions."""

    raw: str  # the float tensor a session produces (or a model input)
    fed: str  # its quantised copy, which the matrix op reads
    fmt: Format
    axis: int  # the reduction axis in one sample's tensor
    groups: int = 1  # a grouped conv's patches: ``axis`` holds one patch per group

    def quantise(self, x: np.ndarray) -> np.ndarray:
        """``x``: this tensor for several samples, stacked on a new first axis."""
        axis = self.axis % (x.ndim - 1) + 1
        split = x.shape[:axis] + (self.groups, x.shape[axis] // self.groups) + x.shape[axis + 1:]
        return quantize_activations(x.reshape(split), self.fmt, axis=axis + 1).reshape(x.shape)


def fpga_outputs(model: onnx.ModelProto, samples: np.ndarray, weight_shapes: Mapping[str, tuple[int, ...]]) -> np.ndarray:
    """``model``'s first output for each sample, stacked as ``onnx_io.run`` stacks them,
    with activations quantised as on the fpga. ``weight_shapes``: the fp32 weights'
    shapes (a tapped Conv's kernel and groups)."""
    tapped, taps = add_taps(model, weight_shapes)
    if not taps:
        return run(session(model), samples)
    feed = tapped.graph.input[0]
    shape = tuple(d.dim_value or 1 for d in feed.type.tensor_type.shape.dim)
    known = {v.name for v in tapped.graph.input}
    steps = []
    for tap in taps:  # a tap on a model input, or on a tensor already made, needs no session
        steps.append((None if tap.raw in known else session(segment(tapped, known, tap.raw)), tap))
        known |= {tap.raw, tap.fed}
    last = session(segment(tapped, known, tapped.graph.output[0].name))
    parts = []
    for start in range(0, len(samples), CHUNK):
        chunk = samples[start:start + CHUNK].astype(np.float32)
        values = {feed.name: chunk.reshape((len(chunk), *shape))}
        for sess, tap in steps:
            if sess is not None:
                values[tap.raw] = _each(sess, values, len(chunk))
            values[tap.fed] = tap.quantise(values[tap.raw])
        parts.append(_each(last, values, len(chunk)))
    out = np.concatenate(parts)
    return out.reshape((-1, *out.shape[2:]))  # each sample's batch of 1, concatenated


def layer_formats(model: onnx.ModelProto) -> dict[str, Format]:
    """The formats ``models.quantize.export`` recorded in ``model``'s metadata."""
    props = {p.key: p.value for p in model.metadata_props}
    return {name: parse_format(f) for name, f in json.loads(props.get(METADATA_FORMATS, "{}")).items()}


def add_taps(model: onnx.ModelProto, weight_shapes: Mapping[str, tuple[int, ...]]) -> tuple[onnx.ModelProto, list[Tap]]:
    """A copy of ``model`` whose narrow-format matrix ops read their input from a tap (a
    tensor no node makes), and those taps in topological order."""
    formats = layer_formats(model)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes, taps = [], []
    for node in model.graph.node:
        weight = node.input[1] if node.op_type in MATRIX_OPS and len(node.input) > 1 else None
        fmt = formats.get(weight, Format.FP32)
        if fmt is Format.FP32 or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        fed = f"{node.input[0]}__fpga{len(taps)}"
        if node.op_type == "Conv":
            new, tap = _conv_on_patches(node, weight_shapes[weight], fed, fmt, out.graph)
        else:
            trans_a = node.op_type == "Gemm" and _attrs(node).get("transA", 0)
            tap = Tap(node.input[0], fed, fmt, -2 if trans_a else -1)
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.input[0] = fed
            new = [copy]
        nodes += new
        taps.append(tap)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out, taps


def segment(model: onnx.ModelProto, known: Collection[str], output: str) -> onnx.ModelProto:
    """The part of ``model`` that computes ``output`` from the ``known`` tensors (its
    inputs), as a model of its own."""
    producer = {o: n for n in model.graph.node for o in n.output if o}
    keep, seen, stack = set(), set(), [output]
    while stack:
        name = stack.pop()
        if name in seen or name in known or name not in producer:
            continue
        seen.add(name)
        keep.add(id(producer[name]))
        stack += _reads(producer[name])
    nodes = [n for n in model.graph.node if id(n) in keep]
    used = {i for n in nodes for i in _reads(n)} | {output}
    declared = {v.name: v for v in [*model.graph.input, *model.graph.output]}

    def value(name: str) -> onnx.ValueInfoProto:  # a tap's tensor: float, shape left open
        return declared.get(name) or helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)

    graph = helper.make_graph(nodes, model.graph.name, [value(n) for n in sorted(used & set(known))],
                              [value(output)], [t for t in model.graph.initializer if t.name in used])
    return helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version,
                             functions=model.functions)


def _conv_on_patches(node, weight_shape, fed: str, fmt: Format, graph) -> tuple[list, Tap]:
    """``node`` as its im2col patches (a Conv with one-hot kernels) and a 1x1 Conv of the
    same weights on the patches' quantised copy."""
    attrs = _attrs(node)
    groups = attrs.pop("group", 1)
    out_channels, per_group, *kernel = weight_shape
    kernel = list(attrs.setdefault("kernel_shape", kernel))
    offsets = int(np.prod(kernel))
    ones = np.eye(offsets, dtype=np.float32).reshape(offsets, 1, *kernel)
    raw = f"{fed}__patches"
    graph.initializer.extend([
        numpy_helper.from_array(np.tile(ones, (per_group * groups,) + (1,) * (ones.ndim - 1)), f"{raw}__onehot"),
        numpy_helper.from_array(np.array([out_channels, per_group * offsets] + [1] * len(kernel), np.int64),
                                f"{raw}__shape"),
    ])
    nodes = [
        helper.make_node("Conv", [node.input[0], f"{raw}__onehot"], [raw], group=per_group * groups, **attrs),
        helper.make_node("Reshape", [node.input[1], f"{raw}__shape"], [f"{raw}__weight"]),
        helper.make_node("Conv", [fed, f"{raw}__weight", *node.input[2:]], list(node.output), name=node.name,
                         group=groups),
    ]
    return nodes, Tap(raw, fed, fmt, axis=1, groups=groups)


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _reads(node) -> list[str]:
    """The tensors ``node`` reads, names its subgraphs (If, Loop, Scan) use included."""
    names = [i for i in node.input if i]
    for a in node.attribute:
        for g in [a.g] if a.type == onnx.AttributeProto.GRAPH else a.graphs:
            names += [i for n in g.node for i in _reads(n)]
    return names


def _each(sess, values: Mapping[str, np.ndarray], count: int) -> np.ndarray:
    """``sess``'s first output for each of ``count`` samples, stacked on a new first axis."""
    names = [i.name for i in sess.get_inputs()]
    return np.stack([sess.run(None, {n: values[n][i] for n in names})[0] for i in range(count)])
