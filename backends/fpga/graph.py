"""An ONNX model as the compiler sees it: static shapes, constants folded, formats known.

* Symbolic dimensions of the inputs are fixed to 1 (batch 1), then shapes are inferred.
* Every node whose inputs are all constant is evaluated once here (with
  ``onnx.reference``): this turns ``models/quantize``'s blocked ``DequantizeLinear``
  (+ ``Reshape``) back into the float weight it stands for, and folds any other
  constant sub-expression, so the compiler only sees ops on activations.
* A weight's format comes from ``ModelConfig.layer_formats`` or, failing that, the
  model's ``bwserve.layer_formats`` metadata (``models.quantize.export``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from backends.base import ModelLoadFailed

METADATA_FORMATS = "bwserve.layer_formats"  # written by models.quantize.export


@dataclass
class Graph:
    model: onnx.ModelProto
    nodes: list  # the nodes left after folding, in topological order
    consts: dict[str, np.ndarray]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, int]  # TensorProto element types
    inputs: list[str]  # request inputs (not initializers)
    outputs: list[str]
    formats: dict[str, str] = field(default_factory=dict)  # weight name -> format name
    opset: int = 21

    def attrs(self, node) -> dict:
        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def is_float(self, name: str) -> bool:
        return self.dtypes.get(name) == onnx.TensorProto.FLOAT

    def consumers(self, name: str) -> list:
        return [n for n in self.nodes if name in n.input]


def _fix_batch(model: onnx.ModelProto) -> None:
    for value in model.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if not dim.HasField("dim_value"):
                dim.dim_value = 1


def _evaluate(node, consts: dict[str, np.ndarray], opset) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    ins = [i for i in node.input if i]
    graph = helper.make_graph(
        [node], "fold", [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(consts[i].dtype), None)
                         for i in ins],
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in node.output if o])
    model = helper.make_model(graph, opset_imports=opset)
    return ReferenceEvaluator(model).run(None, {i: consts[i] for i in ins})


def load_graph(model: onnx.ModelProto, layer_formats: dict[str, str]) -> Graph:
    """Shapes, folded constants and formats of ``model`` (a copy; the argument is kept)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    _fix_batch(model)
    try:
        model = shape_inference.infer_shapes(model, data_prop=True)
    except Exception as exc:  # onnx raises several untyped errors
        raise ModelLoadFailed(f"shape inference failed: {exc}") from exc
    g = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    nodes = []
    for node in g.node:
        if node.op_type == "Constant" or (node.input and all(i in consts for i in node.input if i)
                                          and node.domain in ("", "ai.onnx")):
            try:
                for name, value in zip([o for o in node.output if o], _evaluate(node, consts, model.opset_import)):
                    consts[name] = np.asarray(value)
                continue
            except Exception:  # not foldable here (e.g. a random op): keep it for the host
                pass
        nodes.append(node)
    shapes, dtypes = {}, {}
    for v in [*g.input, *g.value_info, *g.output]:
        t = v.type.tensor_type
        dtypes[v.name] = t.elem_type
        if t.HasField("shape") and all(d.HasField("dim_value") for d in t.shape.dim):
            shapes[v.name] = tuple(d.dim_value for d in t.shape.dim)
    for name, value in consts.items():
        shapes[name] = value.shape
        dtypes[name] = helper.np_dtype_to_tensor_dtype(value.dtype)
    inputs = [v.name for v in g.input if v.name not in consts]
    props = {p.key: p.value for p in model.metadata_props}
    formats = json.loads(props.get(METADATA_FORMATS, "{}"))
    formats.update(layer_formats)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 21)
    return Graph(model, nodes, consts, shapes, dtypes, inputs, [v.name for v in g.output], formats, opset)
