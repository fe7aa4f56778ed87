"""What ``serve convert`` reports about a converted model."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx

from .onnx_io import main_opset

# Ops the FPGA compiler will lower to the systolic array and its vector unit (issue 5).
# Everything else in a model still runs, on the host, when it is served under `fpga`.
FPGA_OPS = frozenset({
    "Gemm", "MatMul", "Conv", "BatchNormalization", "Add", "Mul", "Relu", "Sigmoid", "Tanh",
    "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Transpose", "LSTM", "GRU",
})


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: its name, element type and shape (str for a symbolic dim)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def __str__(self) -> str:
        dims = "x".join(str(d) for d in self.shape) or "scalar"
        return f"{self.name}: {self.dtype}[{dims}]"


@dataclass(frozen=True)
class ConvertSummary:
    """Facts about a converted model, for the CLI and for ``serve deploy``'s log."""

    source: str
    framework: str
    opset: int
    ir_version: int
    op_counts: dict[str, int]            # op type -> how many nodes of it
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameters: int                      # elements in all initializers
    host_ops: tuple[str, ...]            # op types outside FPGA_OPS, sorted
    notes: tuple[str, ...] = field(default=())  # quirk fixes, clean-up tool, opset change

    @property
    def node_count(self) -> int:
        return sum(self.op_counts.values())

    def lines(self) -> list[str]:
        """The summary as plain text lines (the CLI renders the same facts with rich)."""
        out = [
            f"source: {self.source} ({self.framework})",
            f"opset {self.opset}, IR {self.ir_version}, {self.node_count} ops, {self.parameters:,} parameters",
            "ops: " + ", ".join(f"{op} x{n}" for op, n in sorted(self.op_counts.items())),
        ]
        out += [f"input  {spec}" for spec in self.inputs]
        out += [f"output {spec}" for spec in self.outputs]
        if self.host_ops:
            out.append("runs on host under fpga: " + ", ".join(self.host_ops))
        out += [f"note: {note}" for note in self.notes]
        return out


def summarize(model: onnx.ModelProto, source: str, framework: str, notes=()) -> ConvertSummary:
    """Count ops and parameters and list the graph's inputs, outputs and host-only ops."""
    counts = Counter(node.op_type for node in model.graph.node)
    return ConvertSummary(
        source=source,
        framework=framework,
        opset=main_opset(model),
        ir_version=model.ir_version,
        op_counts=dict(counts),
        inputs=tuple(_spec(v) for v in model.graph.input),
        outputs=tuple(_spec(v) for v in model.graph.output),
        # int64 initializers are shapes and axes (Reshape targets), not weights.
        parameters=sum(
            int(np.prod(init.dims, dtype=np.int64))
            for init in model.graph.initializer
            if init.data_type != onnx.TensorProto.INT64
        ),
        host_ops=tuple(sorted(op for op in counts if op not in FPGA_OPS)),
        notes=tuple(notes),
    )


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "?"
    return TensorSpec(value.name, dtype, shape)
