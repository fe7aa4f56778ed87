"""TensorFlow (frozen GraphDef, SavedModel, Keras) to ONNX through tf2onnx.

Needs the ``[tf]`` extra (tf2onnx + tensorflow-cpu); both are imported only when a
TensorFlow model is converted, so the rest of bwserve never pays for them.
"""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import onnx

from .errors import ConversionError

# tf2onnx 1.17 writes at most opset 18; normalize() upgrades to TARGET_OPSET after.
TF2ONNX_OPSET = 18
_NOT_OUTPUTS = {"Const", "NoOp", "Assert", "Placeholder", "VarHandleOp", "SaveV2", "RestoreV2"}


def _import_tf():
    try:
        import tensorflow as tf
        import tf2onnx
    except ImportError as exc:
        raise ConversionError(
            f"converting TensorFlow models needs the [tf] extra: pip install 'bwserve[tf]' ({exc.name} is missing)"
        ) from exc
    return tf, tf2onnx


def tf_to_onnx(path: Path, inputs: Sequence[str] | None = None, outputs: Sequence[str] | None = None) -> onnx.ModelProto:
    """Convert a frozen ``.pb``, a SavedModel folder or a Keras ``.keras``/``.h5`` file.

    ``inputs``/``outputs`` name graph tensors (``X`` or ``X:0``) for a frozen graph; by
    default its placeholders are the inputs and the nodes nothing reads are the outputs.
    """
    tf, tf2onnx = _import_tf()
    path = Path(path)
    if path.is_dir():
        graph_def, ins, outs = _saved_model_graph(tf2onnx, path, inputs, outputs)
    elif path.suffix.lower() in (".keras", ".h5", ".hdf5"):
        return _keras(tf, path, inputs, outputs)
    else:
        graph_def = _read_graph_def(tf, path)
        ins = _ports(inputs) if inputs else _placeholders(graph_def)
        outs = _ports(outputs) if outputs else _sinks(graph_def)
    if not ins or not outs:
        raise ConversionError(f"{path}: cannot tell the graph's inputs ({ins}) and outputs ({outs}); pass them")
    try:
        model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=ins, output_names=outs, opset=TF2ONNX_OPSET)
    except Exception as exc:
        raise ConversionError(f"{path}: tf2onnx could not convert the graph: {exc}") from exc
    return model


def _read_graph_def(tf, path: Path):
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except Exception as exc:
        raise ConversionError(f"{path}: not a frozen TensorFlow GraphDef: {exc}") from exc
    if not graph_def.node:
        raise ConversionError(f"{path}: the GraphDef has no nodes")
    return graph_def


def _saved_model_graph(tf2onnx, path: Path, inputs, outputs):
    try:
        graph_def, ins, outs = tf2onnx.tf_loader.from_saved_model(
            str(path), _ports(inputs) if inputs else None, _ports(outputs) if outputs else None)[:3]
    except Exception as exc:
        raise ConversionError(f"{path}: not a loadable TensorFlow SavedModel: {exc}") from exc
    return graph_def, ins, outs


def _keras(tf, path: Path, inputs, outputs) -> onnx.ModelProto:
    """Keras 3 models go through a SavedModel export, which tf2onnx reads reliably."""
    try:
        model = tf.keras.models.load_model(str(path), compile=False)
    except Exception as exc:
        raise ConversionError(f"{path}: not a loadable Keras model: {exc}") from exc
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "saved_model"
        try:
            model.export(str(saved), verbose=False)
        except TypeError:
            model.export(str(saved))
        return tf_to_onnx(saved, inputs, outputs)


def _ports(names: Sequence[str]) -> list[str]:
    return [n if ":" in n else f"{n}:0" for n in names]


def _placeholders(graph_def) -> list[str]:
    return [f"{n.name}:0" for n in graph_def.node if n.op == "Placeholder"]


def _sinks(graph_def) -> list[str]:
    read = {i.split(":")[0].lstrip("^") for n in graph_def.node for i in n.input}
    return [f"{n.name}:0" for n in graph_def.node if n.name not in read and n.op not in _NOT_OUTPUTS]
