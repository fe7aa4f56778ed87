"""Small, named edits to a converted graph's interface, shared by the TF and torch paths."""
from __future__ import annotations

import onnx

QUIRK_PORT_SUFFIX = "tf-port-suffix-dropped"
QUIRK_BATCH_FIXED = "batch-dimension-set-to-1"


def strip_port_suffix(model: onnx.ModelProto) -> bool:
    """Rename graph inputs/outputs ``X:0`` to ``X``: TensorFlow's output-port suffix means
    nothing to a gRPC client, which asks for the model's inputs by name."""
    taken = {v.name for v in list(model.graph.input) + list(model.graph.output)}
    mapping = {}
    for value in list(model.graph.input) + list(model.graph.output):
        base, sep, port = value.name.rpartition(":")
        if sep and port == "0" and base and base not in taken:
            mapping[value.name] = base
    if not mapping:
        return False
    for node in model.graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
    for value in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        value.name = mapping.get(value.name, value.name)
    return True


def fix_batch(model: onnx.ModelProto, batch: int | str = 1) -> bool:
    """Set a symbolic leading dimension of every input (and output) to ``batch``.

    bwserve serves batch 1; a static batch lets shape inference give every tensor a
    static shape, which the FPGA compiler needs. Inner values are re-inferred later.
    """
    changed = False
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            if isinstance(batch, int):
                dims[0].dim_value = batch
            else:
                dims[0].dim_param = batch
            changed = True
    if changed:
        del model.graph.value_info[:]  # stale: shape inference fills it again
    return changed
