"""``serve quantize MODEL --precision FORMAT|auto [--calibration DATA] -o OUT.onnx``."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    """Add the ``quantize`` subcommand to ``serve``'s subparsers."""
    p = sub.add_parser(
        "quantize", help="quantise a model to narrow precision (one format, or auto per layer)",
        description="Quantise a model's Conv/MatMul/Gemm weights and write standard ONNX. "
                    "--precision auto measures each layer's sensitivity on calibration data and picks, "
                    "per layer, the narrowest format that keeps the model within --budget.",
    )
    p.add_argument("model", nargs="+", type=Path, help="model file(s), anything `serve convert` reads")
    p.add_argument("--precision", required=True,
                   help="auto, or one of: msfp16 msfp12 msfp9 msfp8 mxint8 mxfp8_e4m3 mxfp8_e5m2 "
                        "mxfp6_e3m2 mxfp6_e2m3 mxfp4_e2m1 int8 fp16 fp32")
    p.add_argument("--calibration", metavar="DATA",
                   help="mnist, digits, or an .npz with x (N, ...) and optional integer labels y (N,)")
    p.add_argument("--budget", type=float, default=None,
                   help="auto: accuracy drop allowed in points (labelled data), else relative output "
                        "error allowed in percent (default 0.5)")
    p.add_argument("--samples", type=int, default=1000, help="calibration samples used (default %(default)s)")
    p.add_argument("--input-scale", type=float, default=1.0,
                   help="multiply calibration inputs by this (e.g. 1/255 for a model trained on 0-1)")
    p.add_argument("--candidates", help="comma-separated formats auto may choose from (default: all but int8)")
    p.add_argument("--activations", choices=("float", "fpga"), default="float",
                   help="what the scores assume: float activations (cpu, gpu; the default), or fpga: each "
                        "Conv/MatMul/Gemm input quantised to its layer's format, as `serve deploy --backend "
                        "fpga` runs the model (choose this for a model meant for the fpga)")
    p.add_argument("-o", "--output", type=Path, help="where to write the quantised ONNX model")
    p.set_defaults(func=cmd_quantize, needs_runtime=True)


def cmd_quantize(args: argparse.Namespace) -> int:
    import sys

    from rich.console import Console
    from rich.progress import Progress

    from models.convert import ConversionError, convert, save
    from models.quantize import AUTO, load_calibration, parse_format, quantize_model

    console = Console()
    try:
        model = convert(args.model if len(args.model) > 1 else args.model[0]).model
        calibration = None
        if args.calibration:
            calibration = load_calibration(args.calibration, args.input_scale, args.samples)
        candidates = [parse_format(c) for c in args.candidates.split(",")] if args.candidates else None
        if args.precision != AUTO:
            parse_format(args.precision)
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("calibrating", total=None)

            def on_progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = quantize_model(model, args.precision, calibration, args.budget, candidates, on_progress,
                                    activations=args.activations)
    except (ConversionError, ValueError) as exc:
        print(f"serve quantize: {exc}", file=sys.stderr)
        return 2
    result.report.render(console)
    if args.output:
        save(result.model, args.output)
        console.print(f"wrote {args.output}")
    return 0
