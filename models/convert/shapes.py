"""``--input-shape NAME=D0,D1,...``: parsing it, and applying it to an ONNX model.

One flag for every importer: tf2onnx's input shapes for TensorFlow, the example inputs
of a PyTorch export, the prototxt's input shapes for Caffe, and an override of an ONNX
model's symbolic dimensions. A dimension is a positive integer or a symbolic name.
"""
from __future__ import annotations

import argparse
import re
from collections.abc import Sequence

import onnx

from .errors import ConversionError

Shape = list[int | str]
_DIM = re.compile(r"[1-9][0-9]*|[A-Za-z_][A-Za-z0-9_]*")


def add_input_shape_argument(parser: argparse.ArgumentParser) -> None:
    """The repeatable ``--input-shape`` of ``serve convert`` and ``serve deploy``."""
    parser.add_argument("--input-shape", action="append", default=[], type=parse_input_shape,
                        metavar="NAME=D0,D1,...",
                        help="shape of a model input: needed for torch and for a TF placeholder of unknown "
                             "rank; fixes an ONNX model's symbolic dimensions; repeatable")


def parse_input_shape(item: str) -> tuple[str, Shape]:
    """``"image=1,3,224,224"`` -> ``("image", [1, 3, 224, 224])``; a name stays symbolic."""
    name, sep, dims = item.partition("=")
    parts = [d.strip() for d in dims.split(",")]
    if not sep or not name.strip() or not all(_DIM.fullmatch(d) for d in parts):
        raise argparse.ArgumentTypeError(
            f"expected NAME=D0,D1,... with positive integers or symbolic names, got {item!r}")
    return name.strip(), [int(d) if d.isdigit() else d for d in parts]


def check_names(shapes: dict[str, Sequence[int | str]], inputs: Sequence[str], source: str) -> None:
    """Refuse ``--input-shape`` for a name that is not one of ``inputs``."""
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise ConversionError(
            f"{source}: --input-shape names {', '.join(map(repr, unknown))}, which is not an input of the model "
            f"(its inputs: {', '.join(inputs) or 'none'})")


def override_onnx_dims(model: onnx.ModelProto, shapes: dict[str, Sequence[int | str]], source: str) -> bool:
    """Set the dimensions of the named graph inputs (onnx's ``update_inputs_outputs_dims``).

    Other inputs and every output keep what they declare; shape inference fills in the rest
    later. A rank that differs, or a static dimension given another value, is an error.
    """
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    if not shapes:
        return False
    inits = {init.name for init in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    check_names(shapes, [v.name for v in inputs], source)
    for value in inputs:  # an input of unknown rank takes the rank it is given
        if value.name in shapes and not value.type.tensor_type.HasField("shape"):
            value.type.tensor_type.shape.dim.extend(onnx.TensorShapeProto.Dimension() for _ in shapes[value.name])
    current = {v.name: [d.dim_value if d.HasField("dim_value") else (d.dim_param or -1)
                        for d in v.type.tensor_type.shape.dim] for v in list(model.graph.input) + list(model.graph.output)}
    for name, dims in shapes.items():
        if len(dims) != len(current[name]):
            raise ConversionError(f"{source}: --input-shape gives {name!r} {len(dims)} dimensions, but the model's "
                                  f"input has {len(current[name])} ({_show(current[name])})")
    wanted = {name: list(shapes.get(name, dims)) for name, dims in current.items()}
    outputs = {v.name for v in model.graph.output}
    try:
        update_inputs_outputs_dims(model, {n: d for n, d in wanted.items() if n not in outputs},
                                   {n: d for n, d in wanted.items() if n in outputs})
    except ValueError as exc:  # a static dimension given another value
        raise ConversionError(f"{source}: --input-shape does not fit the model: {exc}") from exc
    except onnx.checker.ValidationError:
        pass  # the dims are set by then; normalize() checks the model after upgrading it
    del model.graph.value_info[:]  # stale: shape inference fills it again
    return True


def _show(dims) -> str:
    return "x".join("?" if d == -1 else str(d) for d in dims) or "scalar"
