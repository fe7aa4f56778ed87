"""A model's serving signature (inputs and outputs) read from its ONNX graph."""
from __future__ import annotations

import onnx

from serve.config import TensorSpec
from serve.datatypes import FROM_ONNX
from serve.errors import InvalidModel


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        raise InvalidModel(f"'{value.name}' is not a tensor; bwserve serves tensor inputs and outputs only")
    datatype = FROM_ONNX.get(tensor_type.elem_type)
    if datatype is None:
        name = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise InvalidModel(f"'{value.name}' has element type {name}, which KServe v2 cannot carry")
    shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
                  for d in tensor_type.shape.dim)
    return TensorSpec(value.name, datatype, shape)


def read_signature(model: onnx.ModelProto) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """(inputs, outputs) of a model; old IR versions list initializers as inputs, skip them."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = tuple(_spec(v) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(_spec(v) for v in model.graph.output)
    if not inputs or not outputs:
        raise InvalidModel("the model's graph has no inputs or no outputs")
    return inputs, outputs


def batch_one(specs: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
    """Fix a leading dynamic dimension to 1: bwserve serves batch 1 and says so in its metadata."""
    return tuple(TensorSpec(s.name, s.datatype, (1, *s.shape[1:]) if s.shape and s.shape[0] == -1 else s.shape)
                 for s in specs)
