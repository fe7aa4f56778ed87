"""Opset and IR version targets, and the one place that writes a model's IR version.

onnx 1.23 stamps IR 14 on every model it builds, which onnxruntime-gpu 1.31 rejects
(see DESIGN.md). Every model the toolchain hands on goes through :func:`finalize` so
the number is chosen here and nowhere else.
"""
from __future__ import annotations

from pathlib import Path

import onnx

from .errors import ConversionError

# Opset 21 is where blocked DequantizeLinear (the quantiser's block formats) starts;
# IR 10 is the IR version that came with it and that every onnxruntime we use accepts.
TARGET_OPSET = 21
TARGET_IR_VERSION = 10


def finalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Stamp the target IR version and drop opset imports of domains no node uses."""
    model.ir_version = TARGET_IR_VERSION
    used = {node.domain for node in _all_nodes(model.graph)}
    keep = [op for op in model.opset_import if op.domain in ("", "ai.onnx") or op.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    return model


def save(model: onnx.ModelProto, path: Path | str) -> None:
    """Write ``model`` with the project's IR version."""
    onnx.save_model(finalize(model), str(path))


def load(path: Path | str) -> onnx.ModelProto:
    """Read an ONNX file, turning protobuf's opaque failure into a :class:`ConversionError`."""
    path = Path(path)
    try:
        return onnx.load_model(str(path))
    except Exception as exc:  # protobuf raises DecodeError, onnx raises its own on externals
        raise ConversionError(f"{path}: not a readable ONNX model ({exc})") from exc


def main_opset(model: onnx.ModelProto) -> int:
    """The version of the default ("" / "ai.onnx") domain the model imports."""
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            return op.version
    # IR 1-2 models may omit the import; the ONNX spec then means opset 1.
    return 1


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            for sub in attr.graphs:
                yield from _all_nodes(sub)
