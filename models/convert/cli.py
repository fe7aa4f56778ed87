"""``serve convert``: import a model from any supported framework and write clean ONNX."""
from __future__ import annotations

import argparse

from .shapes import add_input_shape_argument

FRAMEWORK_CHOICES = ("caffe", "tf", "cntk", "torch", "onnx")


def register(subparsers) -> None:
    """Add the ``convert`` subcommand (``serve/cli.py`` calls this)."""
    p = subparsers.add_parser(
        "convert",
        help="convert a CNTK/Caffe/TensorFlow/PyTorch/ONNX model to checked, current-opset ONNX",
        description="Convert a model to ONNX at the project's opset: checked, shapes inferred, "
                    "constants and BatchNorms folded. The framework is detected from the files "
                    "unless --from is given.",
    )
    p.add_argument("src", nargs="+", help="model file(s) or folder: model.onnx; deploy.prototxt + "
                   "weights.caffemodel; frozen.pb, a SavedModel folder or model.keras; model.pt")
    p.add_argument("--from", dest="framework", choices=FRAMEWORK_CHOICES, help="source framework")
    p.add_argument("-o", "--output", required=True, help="where to write the ONNX model")
    add_input_shape_argument(p)
    p.add_argument("--inputs", help="comma-separated input tensors of a frozen TF graph")
    p.add_argument("--outputs", help="comma-separated output tensors of a frozen TF graph")
    p.add_argument("--dynamic-batch", action="store_true", help="keep the batch dimension symbolic instead of 1")
    p.add_argument("--cleanup", choices=("auto", "onnxsim", "ort", "none"), default="auto",
                   help="graph simplifier (auto: onnxsim if installed, else onnxruntime)")
    p.set_defaults(func=run, needs_runtime=True)


def run(args: argparse.Namespace) -> int:
    """Convert, write the model, and print the summary; 1 with a message on failure."""
    from pathlib import Path

    from rich.console import Console
    from rich.markup import escape

    from . import ConversionError, convert, save
    from .summary_view import render

    console, errors = Console(), Console(stderr=True)
    try:
        shapes = dict(args.input_shape)
        with console.status("converting") as status:
            result = convert(
                [Path(s) for s in args.src],
                args.framework,
                input_shapes=shapes or None,
                inputs=args.inputs.split(",") if args.inputs else None,
                outputs=args.outputs.split(",") if args.outputs else None,
                dynamic_batch=args.dynamic_batch,
                cleanup=None if args.cleanup == "none" else args.cleanup,
                progress=lambda message: status.update(message),
            )
            status.update(f"writing {args.output}")
            save(result.model, args.output)
    except ConversionError as exc:
        errors.print(f"[bold red]convert failed:[/] {escape(str(exc))}", highlight=False)
        return 1
    console.print(render(result.summary, args.output))
    return 0
