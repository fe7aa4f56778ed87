"""What the quantiser returns and prints: per-layer table, bits, sizes, accuracy."""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from models.quantize.activations import ActivationRule


@dataclass(frozen=True, slots=True)
class LayerReport:
    """One quantised weight."""

    name: str
    shape: tuple[int, ...]
    weights: int  # number of values
    format: str
    bits_per_weight: float  # element bits + amortised shared exponents
    weight_error: float | None  # 100 * ||W_q - W|| / ||W||, percent (None: not measured)
    output_error: float | None  # this layer alone quantised: relative output error, %
    accuracy_drop: float | None  # this layer alone quantised: points lost (labelled data)


@dataclass(frozen=True)
class QuantizeReport:
    precision: str  # what was asked: a format name or "auto"
    layers: tuple[LayerReport, ...]
    size_fp32_bytes: int  # all initializers in fp32
    size_bytes: int  # all initializers, weights at their format's own bits
    onnx_bytes_before: int  # serialised ONNX files (narrow formats in wider ONNX types)
    onnx_bytes_after: int
    calibration: str | None = None
    samples: int = 0
    budget: float | None = None
    metric: str | None = None  # what the budget limits
    fp32_accuracy: float | None = None  # percent, on the calibration data
    accuracy: float | None = None
    output_error: float | None = None  # whole quantised model, relative, percent
    notes: tuple[str, ...] = field(default=())
    activations: ActivationRule = ActivationRule.FLOAT  # what every score was measured under

    @property
    def average_bits(self) -> float:
        """Bits per weight over all quantised weights, shared exponents included."""
        total = sum(layer.weights for layer in self.layers)
        return sum(layer.weights * layer.bits_per_weight for layer in self.layers) / max(total, 1)

    def render(self, console=None) -> None:
        """Print the per-layer table and the summary with rich."""
        from rich import box
        from rich.console import Console
        from rich.table import Table
        from rich.markup import escape  # layer names and notes are text, not markup

        console = console or Console()
        table = Table(title=f"precision {self.precision}", box=box.SIMPLE_HEAD, show_edge=False)
        headers = ("layer", "shape", "weights", "format", "bits", "weight\nerr %", "output\nerr %", "acc drop\npoints")
        for column in headers:
            left = column in ("layer", "format")
            table.add_column(column, justify="left" if left else "right", overflow="fold")
        for layer in self.layers:
            table.add_row(
                escape(layer.name), "x".join(map(str, layer.shape)), str(layer.weights), layer.format,
                f"{layer.bits_per_weight:.2f}", _fmt(layer.weight_error, 2), _fmt(layer.output_error, 2),
                _fmt(layer.accuracy_drop, 2),
            )
        console.print(table)
        console.print(f"average bits per weight: {self.average_bits:.2f}")
        console.print(
            f"size: {self.size_fp32_bytes:,} B fp32 -> {self.size_bytes:,} B in format "
            f"(ONNX file {self.onnx_bytes_before:,} B -> {self.onnx_bytes_after:,} B)"
        )
        if self.calibration:
            line = f"on {self.samples} samples of {self.calibration}: output error {_fmt(self.output_error, 3)} %"
            if self.fp32_accuracy is not None:
                line += f", accuracy {self.accuracy:.2f} % (fp32 {self.fp32_accuracy:.2f} %)"
            if self.budget is not None:
                line += f"; budget {self.budget} ({self.metric})"
            console.print(line)
            console.print(f"measured with {self.activations.description}")
        for note in self.notes:
            console.print(f"note: {escape(note)}")


# ModelConfig.backend_options entry telling the FPGA backend how to treat activations:
# quantise each Conv/MatMul/Gemm input to its weight's entry in layer_formats
# (models.quantize.quantize_activations). CPU/GPU ignore it: they keep float activations.
ACTIVATIONS_OPTION = "activations"
ACTIVATIONS_LIKE_WEIGHTS = "layer_formats"


@dataclass(frozen=True)
class QuantizeResult:
    """``model``: standard ONNX, ready for any backend; ``layer_formats``: what goes into
    ``ModelConfig.layer_formats``; ``report``: the numbers behind the choice."""

    model: onnx.ModelProto
    layer_formats: dict[str, str]
    report: QuantizeReport

    @property
    def backend_options(self) -> dict[str, str]:
        """Entries for ``ModelConfig.backend_options`` (the activation rule above)."""
        return {ACTIVATIONS_OPTION: ACTIVATIONS_LIKE_WEIGHTS}


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
