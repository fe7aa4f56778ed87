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


def tf_to_onnx(path: Path, inputs: Sequence[str] | None = None, outputs: Sequence[str] | None = None,
               input_shapes: dict[str, Sequence[int | str]] | None = None,
               dynamic_batch: bool = False) -> onnx.ModelProto:
    """Convert a frozen ``.pb``, a SavedModel folder or a Keras ``.keras``/``.h5`` file.

    ``inputs``/``outputs`` name graph tensors (``X`` or ``X:0``) for a frozen graph; by
    default its placeholders are the inputs and the nodes nothing reads are the outputs.
    ``input_shapes`` gives tf2onnx the shape of a placeholder by name (a symbolic dim is
    unknown to it); a placeholder of unknown rank needs one. An unknown leading dimension
    becomes 1 unless ``dynamic_batch``.
    """
    tf, tf2onnx = _import_tf()
    path = Path(path)
    if path.is_dir():
        graph_def, ins, outs = _saved_model_graph(tf2onnx, path, inputs, outputs)
    elif path.suffix.lower() in (".keras", ".h5", ".hdf5"):
        return _keras(tf, path, inputs, outputs, input_shapes, dynamic_batch)
    else:
        graph_def = _read_graph_def(tf, path)
        ins = _ports(inputs) if inputs else _placeholders(graph_def)
        outs = _ports(outputs) if outputs else _sinks(graph_def)
    if not ins or not outs:
        raise ConversionError(f"{path}: cannot tell the graph's inputs ({ins}) and outputs ({outs}); pass them")
    override = _shape_override(graph_def, ins, input_shapes or {}, path, dynamic_batch)
    try:
        model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=ins, output_names=outs,
                                                  opset=TF2ONNX_OPSET, shape_override=override or None)
    except Exception as exc:
        raise ConversionError(f"{path}: tf2onnx could not convert the graph: {exc}") from exc
    return model


def _shape_override(graph_def, ins: list[str], shapes: dict, path: Path, dynamic_batch: bool) -> dict[str, list[int]]:
    """tf2onnx's ``shape_override`` ({"X:0": dims}, -1 unknown) from ``--input-shape`` and the
    placeholders' own shapes; refuses placeholders of unknown rank that were given none."""
    from .shapes import check_names

    shapes = {_base(name): dims for name, dims in shapes.items()}
    check_names(shapes, [_base(port) for port in ins], str(path))
    placeholders = {n.name: n for n in graph_def.node if n.op == "Placeholder"}
    override, unranked = {}, []
    for port in ins:
        name, node = _base(port), placeholders.get(_base(port))
        if name in shapes:
            override[port] = [d if isinstance(d, int) else -1 for d in shapes[name]]
        elif node is not None and ("shape" not in node.attr or node.attr["shape"].shape.unknown_rank):
            unranked.append(name)  # tf2onnx would treat it as a scalar
        elif node is not None and not dynamic_batch:
            dims = [d.size for d in node.attr["shape"].shape.dim]
            if dims and dims[0] == -1:
                override[port] = [1, *dims[1:]]
    if unranked:
        flags = " ".join(f"--input-shape {name}=D0,D1,..." for name in unranked)
        raise ConversionError(
            f"{path}: placeholder{'s' if len(unranked) > 1 else ''} {', '.join(map(repr, unranked))} "
            f"{'have' if len(unranked) > 1 else 'has'} no static shape (unknown rank), so pass "
            f"{'each one' if len(unranked) > 1 else 'it'}: {flags}")
    return override


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


def _keras(tf, path: Path, inputs, outputs, input_shapes, dynamic_batch) -> onnx.ModelProto:
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
        return tf_to_onnx(saved, inputs, outputs, input_shapes, dynamic_batch)


def _ports(names: Sequence[str]) -> list[str]:
    return [n if ":" in n else f"{n}:0" for n in names]


def _base(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


def _placeholders(graph_def) -> list[str]:
    return [f"{n.name}:0" for n in graph_def.node if n.op == "Placeholder"]


def _sinks(graph_def) -> list[str]:
    read = {i.split(":")[0].lstrip("^") for n in graph_def.node for i in n.input}
    return [f"{n.name}:0" for n in graph_def.node if n.name not in read and n.op not in _NOT_OUTPUTS]
