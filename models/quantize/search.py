"""Adaptive per-layer precision: the narrowest format per layer within an accuracy budget.

1. Sensitivity: each layer alone in each candidate format, the rest fp32, scored on the
   calibration data (relative output error always; accuracy too when labels exist).
2. Start: each layer at its narrowest candidate that alone stays within the budget.
3. While the whole model is over budget, widen one layer one step: the move that buys
   the most sensitivity (alone-error, a smooth measure even when accuracy is not) per
   extra bit of storage. fp32 everywhere meets any budget, so this ends.

Layer errors do not add exactly, which is why step 3 re-measures the whole model after
each move instead of trusting step 1's numbers.

Every score is measured under one ``ActivationRule``: float activations (cpu, gpu) or
each matrix op's input quantised like its weights (fpga, ``fpga_eval``). A format that
is harmless with float inputs can lose far more once its inputs share its block scales.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from models.quantize.activations import ActivationRule
from models.quantize.calibration import Calibration
from models.quantize.export import apply_formats, storage_bits
from models.quantize.formats import Family, Format
from models.quantize.fpga_eval import fpga_outputs
from models.quantize.onnx_io import WeightRef, run, session

# Formats ``auto`` may pick per layer. int8 is excluded: onnxruntime's int8 quantises
# activations of the whole model, which is not a per-weight choice.
DEFAULT_CANDIDATES = tuple(
    sorted(
        (f for f in Format if f.spec.family in (Family.BFP, Family.MX, Family.IEEE)),
        key=lambda f: (f.spec.bits_per_weight, f.value),
    )
)

# Called as progress(done, total) after each model evaluation; total may grow.
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Score:
    """How a model does on the calibration data."""

    rel_error: float  # 100 * ||y - y_fp32|| / ||y_fp32|| over all outputs, percent
    accuracy: float | None  # percent correct (argmax of the first output), if labelled


class Evaluator:
    """Runs models on calibration data, with activations as ``activations`` says, and
    compares them with the fp32 model (the same under either rule: fp32 layers keep
    float inputs)."""

    def __init__(self, reference: onnx.ModelProto, calibration: Calibration,
                 activations: ActivationRule = ActivationRule.FLOAT) -> None:
        self.calibration = calibration
        self.activations = ActivationRule(activations)
        self.evaluations = 0
        self._weight_shapes = {t.name: tuple(t.dims) for t in reference.graph.initializer}
        self._ref_out = self._outputs(reference)
        self.reference = self._score_outputs(self._ref_out)

    @property
    def labelled(self) -> bool:
        return self.calibration.y is not None

    @property
    def metric(self) -> str:
        return "accuracy drop (points)" if self.labelled else "relative output error (%)"

    def _score_outputs(self, out: np.ndarray) -> Score:
        diff = np.linalg.norm(out - self._ref_out) / max(np.linalg.norm(self._ref_out), 1e-30)
        accuracy = None
        if self.labelled:
            predicted = out.reshape(len(out), -1).argmax(axis=1)
            accuracy = 100.0 * float(np.mean(predicted == self.calibration.y))
        return Score(100.0 * float(diff), accuracy)

    def _outputs(self, model: onnx.ModelProto) -> np.ndarray:
        if self.activations is ActivationRule.FPGA:
            return fpga_outputs(model, self.calibration.x, self._weight_shapes).astype(np.float64)
        return run(session(model), self.calibration.x).astype(np.float64)

    def score(self, model: onnx.ModelProto) -> Score:
        self.evaluations += 1
        return self._score_outputs(self._outputs(model))

    def cost(self, score: Score) -> float:
        """What the budget limits: accuracy drop in points, else relative error in %."""
        if self.labelled:
            return self.reference.accuracy - score.accuracy
        return score.rel_error


def choose_formats(
    model: onnx.ModelProto,
    refs: Sequence[WeightRef],
    evaluator: Evaluator,
    budget: float,
    candidates: Sequence[Format] = DEFAULT_CANDIDATES,
    progress: Progress | None = None,
) -> tuple[dict[str, Format], dict[str, dict[Format, Score]]]:
    """Per-layer formats for a prepared ``model`` within ``budget``, and each layer's
    alone-scores by format (for the report)."""
    tick = progress or (lambda done, total: None)
    order = sorted(set(candidates) | {Format.FP32}, key=lambda f: (f.spec.bits_per_weight, f.value))
    narrow = [f for f in order if f is not Format.FP32]
    total = len(refs) * len(narrow) + 1
    alone: dict[str, dict[Format, Score]] = {r.name: {Format.FP32: evaluator.reference} for r in refs}
    for ref in refs:
        for fmt in narrow:
            alone[ref.name][fmt] = evaluator.score(apply_formats(model, refs, {ref.name: fmt}))
            tick(evaluator.evaluations, total)

    choice = {r.name: next(f for f in order if evaluator.cost(alone[r.name][f]) <= budget) for r in refs}
    size = {r.name: r for r in refs}
    while True:
        score = evaluator.score(apply_formats(model, refs, choice))
        tick(evaluator.evaluations, max(total, evaluator.evaluations + 1))
        if evaluator.cost(score) <= budget:
            return choice, alone
        best, best_gain = None, -np.inf
        for name, current in choice.items():
            here = alone[name][current].rel_error
            bits_now = storage_bits(size[name], current)
            for fmt in order:
                extra = storage_bits(size[name], fmt) - bits_now
                if extra <= 0 or alone[name][fmt].rel_error >= here:
                    continue
                gain = (here - alone[name][fmt].rel_error) / extra
                if gain > best_gain:
                    best, best_gain = (name, fmt), gain
        if best is None:  # nothing left that helps: every layer at its most accurate
            return {name: Format.FP32 for name in choice}, alone
        choice[best[0]] = best[1]
        total += 1
