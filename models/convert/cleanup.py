"""Graph clean-up: constant folding, BatchNorm folding, dead-node removal.

Two maintained tools do this here and give the same graphs on the shipped models:
onnxsim (PyPI ``onnxsim``, a wheel; not a declared dependency yet) and onnxruntime's
own offline optimiser at ORT_ENABLE_BASIC, whose output is plain ONNX (the higher
levels emit onnxruntime-only fused ops, which the FPGA compiler could not read).
"""
from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import onnx

from .errors import ConversionError
from .onnx_io import TARGET_IR_VERSION

TOOLS = ("onnxsim", "ort")


def available_tools() -> list[str]:
    """The clean-up tools importable in this environment, preferred first."""
    return ["onnxsim", "ort"] if _has_onnxsim() else ["ort"]


def _has_onnxsim() -> bool:
    try:
        return importlib.util.find_spec("onnxsim") is not None
    except ValueError:  # sys.modules["onnxsim"] is None: blocked on purpose
        return False


def cleanup(model: onnx.ModelProto, source: str, tool: str = "auto") -> tuple[onnx.ModelProto, str]:
    """Simplify ``model`` with ``tool`` (``"auto"``: onnxsim if installed, else onnxruntime).

    Returns the new model and the name of the tool that produced it.
    """
    if tool == "auto":
        tool = available_tools()[0]
    if tool not in TOOLS:
        raise ConversionError(f"unknown clean-up tool {tool!r}; expected one of {', '.join(TOOLS)}")
    if tool == "onnxsim":
        return _onnxsim(model, source), "onnxsim"
    return _ort_basic(model, source), "onnxruntime ORT_ENABLE_BASIC"


def _onnxsim(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    import onnxsim

    try:
        simplified, ok = onnxsim.simplify(model)
    except Exception as exc:
        raise ConversionError(f"{source}: onnxsim failed to simplify the model ({exc})") from exc
    if not ok:
        raise ConversionError(f"{source}: onnxsim's simplified model does not match the original")
    simplified.ir_version = TARGET_IR_VERSION
    return simplified


def _ort_basic(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3  # its warnings are about the input we are cleaning
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        try:
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ConversionError(f"{source}: onnxruntime cannot load the model ({exc})") from exc
        optimized = onnx.load_model(options.optimized_model_filepath)
    # onnxruntime names itself producer; keep the exporter's name for provenance.
    optimized.producer_name, optimized.producer_version = model.producer_name, model.producer_version
    return optimized
