"""Quantised weights as standard ONNX: narrow tensors through blocked ``DequantizeLinear``.

Each quantised weight ``W`` becomes

    W__q (narrow element type) --DequantizeLinear(axis, block_size)--> [Reshape] --> W
    W__scale (float32 powers of two, one per block)

so every consumer still reads ``W`` and onnxruntime runs the model unchanged. A conv
kernel ``[O, I, kh, kw]`` is stored as its im2col matrix ``[O, I*kh*kw]`` (blocks along
the whole reduction, as the FPGA's matrix unit sees it) and reshaped back.

Elements go into the narrowest ONNX type onnxruntime runs that holds every value
exactly (``STORAGE``): onnxruntime has no FLOAT4E2M1 kernel and ONNX has no FP6 type, so
FP4/FP6 live in FLOAT8E4M3FN; BFP's sign-magnitude integers live in INT4/INT8 (two's
complement, never using its extra negative code). Each node's doc_string says so.
"""
from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.quantize.formats import Element, Family, Format, fake_quantize, quantize_blocks
from models.quantize.onnx_io import WeightRef

# Narrowest onnxruntime-runnable ONNX type holding every value of each element exactly.
STORAGE = {
    Element.INT3: TensorProto.INT4,
    Element.INT4: TensorProto.INT4,
    Element.INT8: TensorProto.INT8,
    Element.FP4_E2M1: TensorProto.FLOAT8E4M3FN,
    Element.FP6_E2M3: TensorProto.FLOAT8E4M3FN,
    Element.FP6_E3M2: TensorProto.FLOAT8E4M3FN,
    Element.FP8_E4M3: TensorProto.FLOAT8E4M3FN,
    Element.FP8_E5M2: TensorProto.FLOAT8E5M2,
}
_NUMPY_TYPE = {
    TensorProto.INT4: ml_dtypes.int4,
    TensorProto.INT8: np.int8,
    TensorProto.FLOAT8E4M3FN: ml_dtypes.float8_e4m3fn,
    TensorProto.FLOAT8E5M2: ml_dtypes.float8_e5m2,
}
METADATA_FORMATS = "bwserve.layer_formats"  # JSON {initializer name: format}
METADATA_ACTIVATIONS = "bwserve.activations"
ACTIVATION_NOTE = (
    "cpu/gpu: float32 activations. fpga: each Conv/MatMul/Gemm input is quantised to its "
    "weight's format in blocks along the reduction axis (models.quantize.quantize_activations)"
)


def quantized_weight(w: np.ndarray, ref: WeightRef, fmt: Format) -> np.ndarray:
    """The float32 weight a layer computes with in ``fmt`` (numpy; the exported model's
    DequantizeLinear gives exactly this)."""
    matrix = np.asarray(w, dtype=np.float32).reshape(ref.matrix_shape)
    return fake_quantize(matrix, fmt, axis=ref.block_axis).reshape(ref.shape)


def _block_nodes(w: np.ndarray, ref: WeightRef, fmt: Format):
    spec = fmt.spec
    element = spec.element
    q = quantize_blocks(w.reshape(ref.matrix_shape), fmt, axis=ref.block_axis)
    elements, scale_exp = q.elements, q.scale_exp
    if element.spec.is_int:  # store the integer k; its 2**-mbits moves into the scale
        elements, scale_exp = np.ldexp(elements, element.spec.mbits), scale_exp - element.spec.mbits
    storage = STORAGE[element]
    stored = elements.astype(_NUMPY_TYPE[storage])
    if not np.array_equal(stored.astype(np.float64), elements):
        raise AssertionError(f"{element.name} values not exact in {TensorProto.DataType.Name(storage)}")
    scale = np.ldexp(np.float32(1.0), scale_exp).astype(np.float32)
    reshape = ref.matrix_shape != ref.shape
    dq_out = f"{ref.name}__dq" if reshape else ref.name
    inits = [numpy_helper.from_array(stored, f"{ref.name}__q"), numpy_helper.from_array(scale, f"{ref.name}__scale")]
    doc = (
        f"bwserve: {ref.name} in {fmt.value} ({element.name} elements, {element.spec.bits} bits, "
        f"stored in {TensorProto.DataType.Name(storage)}; one power-of-two scale per {spec.block_size} "
        f"values along the reduction axis, a {spec.scale_bits}-bit exponent stored as float32)"
    )
    nodes = [
        helper.make_node(
            "DequantizeLinear", [f"{ref.name}__q", f"{ref.name}__scale"], [dq_out],
            name=f"{ref.name}__dequantize", axis=ref.block_axis, block_size=spec.block_size, doc_string=doc,
        )
    ]
    if reshape:
        inits.append(numpy_helper.from_array(np.array(ref.shape, dtype=np.int64), f"{ref.name}__shape"))
        nodes.append(helper.make_node("Reshape", [dq_out, f"{ref.name}__shape"], [ref.name], name=f"{ref.name}__reshape"))
    return inits, nodes


def _fp16_nodes(w: np.ndarray, ref: WeightRef):
    init = numpy_helper.from_array(w.astype(np.float16), f"{ref.name}__fp16")
    node = helper.make_node(
        "Cast", [init.name], [ref.name], name=f"{ref.name}__cast", to=TensorProto.FLOAT,
        doc_string=f"bwserve: {ref.name} stored in fp16",
    )
    return [init], [node]


def apply_formats(model: onnx.ModelProto, refs: list[WeightRef], formats: dict[str, Format]) -> onnx.ModelProto:
    """A copy of a prepared ``model`` with each weight in ``formats`` stored in its format.

    Only block formats, fp16 and fp32 are per-layer; int8 is a whole-model rewrite
    (``models.quantize.int8``).
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    by_name = {r.name: r for r in refs}
    weights = {t.name: t for t in out.graph.initializer}
    new_inits, new_nodes = [], []
    for name, fmt in formats.items():
        ref = by_name[name]
        family = fmt.spec.family
        if fmt is Format.FP32:
            continue
        w = numpy_helper.to_array(weights[name]).astype(np.float32)
        if family in (Family.BFP, Family.MX):
            inits, nodes = _block_nodes(w, ref, fmt)
        elif fmt is Format.FP16:
            inits, nodes = _fp16_nodes(w, ref)
        else:
            raise ValueError(f"{fmt.value} cannot be chosen per layer")
        out.graph.initializer.remove(weights[name])
        new_inits += inits
        new_nodes += nodes
    out.graph.initializer.extend(new_inits)
    # Dequantisation reads only initializers, so it may come first in topological order.
    nodes = new_nodes + list(out.graph.node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    set_metadata(out, {n: f.value for n, f in formats.items()})
    return out


def set_metadata(model: onnx.ModelProto, layer_formats: dict[str, str]) -> None:
    """Record the per-layer formats and the activation rule in ``metadata_props``."""
    props = {p.key: p.value for p in model.metadata_props}
    props[METADATA_FORMATS] = json.dumps(layer_formats, sort_keys=True)
    props[METADATA_ACTIVATIONS] = ACTIVATION_NOTE
    helper.set_model_props(model, props)


def storage_bits(ref: WeightRef, fmt: Format) -> int:
    """Bits ``ref`` takes in ``fmt`` itself (FP6 counts 6 bits, whatever ONNX stores it in)."""
    spec = fmt.spec
    if spec.element is None:
        return ref.size * spec.plain_bits  # int8: its per-channel scales not counted
    rows, cols = ref.matrix_shape
    along = cols if ref.block_axis == 1 else rows
    blocks = (ref.size // along) * -(-along // spec.block_size)
    return ref.size * spec.element.spec.bits + blocks * spec.scale_bits
