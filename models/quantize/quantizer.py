"""``quantize_model``: one format for the whole model, or ``auto`` per layer."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from models.quantize.activations import ActivationRule
from models.quantize.calibration import Calibration
from models.quantize.export import apply_formats, quantized_weight, set_metadata, storage_bits
from models.quantize.formats import Format, parse_format
from models.quantize.int8 import quantize_int8
from models.quantize.onnx_io import WeightRef, find_weights, prepare
from models.quantize.report import LayerReport, QuantizeReport, QuantizeResult
from models.quantize.search import DEFAULT_CANDIDATES, Evaluator, Progress, Score, choose_formats

AUTO = "auto"
DEFAULT_BUDGET = 0.5


def quantize_model(
    model: onnx.ModelProto,
    precision: str,
    calibration: Calibration | None = None,
    budget: float | None = None,
    candidates: Sequence[Format] | None = None,
    progress: Progress | None = None,
    activations: ActivationRule | str = ActivationRule.FLOAT,
) -> QuantizeResult:
    """Quantise ``model``'s Conv/MatMul/Gemm weights (see the package docstring)."""
    activations = ActivationRule(activations)
    fixed = None if precision == AUTO else parse_format(precision)
    if activations is ActivationRule.FPGA and Format.INT8 in {fixed, *(candidates or ())}:
        raise ValueError("int8 (onnxruntime QDQ) is for cpu/gpu; the fpga runs block formats, fp16 or fp32")
    prepared = prepare(model)
    refs = find_weights(prepared)
    if not refs:
        raise ValueError("no Conv/MatMul/Gemm float32 weights to quantise")
    evaluator = Evaluator(prepared, calibration, activations) if calibration is not None else None
    alone: dict[str, dict[Format, Score]] = {}
    notes: list[str] = []
    if fixed is None:
        if evaluator is None:
            raise ValueError("--precision auto needs calibration data")
        budget = DEFAULT_BUDGET if budget is None else budget
        pool = tuple(candidates) if candidates else DEFAULT_CANDIDATES
        formats, alone = choose_formats(prepared, refs, evaluator, budget, pool, progress)
    else:
        formats = {r.name: fixed for r in refs}
        budget = None
    if Format.INT8 in formats.values():
        samples = None if calibration is None else _model_shaped(prepared, calibration.x)
        quantised = quantize_int8(prepared, samples)
        quantised.ir_version = prepared.ir_version
        set_metadata(quantised, {n: f.value for n, f in formats.items()})
        notes.append("int8 (onnxruntime.quantization) quantises activations too; "
                     + ("static QDQ, per-channel weights" if samples else "dynamic: no calibration data"))
    else:
        quantised = apply_formats(prepared, refs, formats)
    final = evaluator.score(quantised) if evaluator else None
    report = _report(precision, prepared, quantised, refs, formats, alone, evaluator, final, budget, notes,
                     activations)
    return QuantizeResult(quantised, {n: f.value for n, f in formats.items()}, report)


def _model_shaped(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    dims = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    return [s.reshape(dims).astype(np.float32) for s in x]


def _report(precision, prepared, quantised, refs, formats, alone, evaluator, final, budget, notes,
            activations) -> QuantizeReport:
    weights = {t.name: numpy_helper.to_array(t) for t in prepared.graph.initializer}
    layers = []
    for ref in refs:
        fmt = formats[ref.name]
        score = alone.get(ref.name, {}).get(fmt)
        drop = evaluator.cost(score) if score is not None and evaluator.labelled else None
        layers.append(LayerReport(
            ref.name, ref.shape, ref.size, fmt.value, storage_bits(ref, fmt) / ref.size,
            None if fmt is Format.INT8 else _weight_error(weights[ref.name], ref, fmt),
            None if score is None else score.rel_error, drop,
        ))
    fp32_bytes = sum(a.size * 4 for a in weights.values() if a.dtype == np.float32)
    other_bytes = sum(a.nbytes for n, a in weights.items() if n not in formats)
    in_format = sum(storage_bits(r, formats[r.name]) for r in refs) // 8 + other_bytes
    return QuantizeReport(
        precision=precision, layers=tuple(layers), size_fp32_bytes=fp32_bytes, size_bytes=in_format,
        onnx_bytes_before=prepared.ByteSize(), onnx_bytes_after=quantised.ByteSize(),
        calibration=evaluator.calibration.name if evaluator else None,
        samples=len(evaluator.calibration) if evaluator else 0,
        budget=budget, metric=evaluator.metric if evaluator else None,
        fp32_accuracy=evaluator.reference.accuracy if evaluator else None,
        accuracy=final.accuracy if final else None, output_error=final.rel_error if final else None,
        notes=tuple(notes), activations=activations,
    )


def _weight_error(w: np.ndarray, ref: WeightRef, fmt: Format) -> float:
    q = quantized_weight(w, ref, fmt).astype(np.float64)
    return 100.0 * float(np.linalg.norm(q - w) / max(np.linalg.norm(w), 1e-30))
