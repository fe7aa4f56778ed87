"""Helpers for the FPGA backend's tests: compile a model in memory, run it, compare."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from backends.base import ModelSpec
from backends.fpga import FpgaBackend
from models.convert.onnx_io import finalize

SHARED_MODELS = Path(__file__).resolve().parents[2].parent / "shared" / "models"
CNTK_MNIST = SHARED_MODELS / "cntk_mnist" / "model.onnx"


def fpga(model: onnx.ModelProto, layer_formats: dict | None = None, **options: str) -> FpgaBackend:
    """An FpgaBackend with ``model`` compiled under ``options`` (backend option strings)."""
    backend = FpgaBackend(ModelSpec(name="m", layer_formats=dict(layer_formats or {}),
                                    options={k: str(v) for k, v in options.items()}))
    backend.load_model(model)
    return backend


def ort_run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    from models.quantize.onnx_io import exact_session_options

    sess = ort.InferenceSession(model.SerializeToString(), exact_session_options(),
                                providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def make_model(nodes, inputs: dict, outputs: dict, inits: dict | None = None, opset: int = 21) -> onnx.ModelProto:
    """A float32 model from nodes, {name: shape} inputs/outputs and numpy initializers."""
    vi = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    graph = helper.make_graph(
        nodes, "t", [vi(n, s) for n, s in inputs.items()], [vi(n, s) for n, s in outputs.items()],
        [onnx.numpy_helper.from_array(np.asarray(v), n) for n, v in (inits or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if all(s is not None for s in outputs.values()):  # the checker wants output shapes
        onnx.checker.check_model(model)
    return finalize(model)


def bfp_bound(x: np.ndarray, w: np.ndarray, mant_bits: int = 16) -> np.ndarray:
    """Error bound of ``x (T, K) @ w (K, N)`` computed with both operands rounded to
    blocks of ``mant_bits``-bit mantissas: an element is off by at most half a unit,
    which is at most ``max|block| / (2**(mant_bits-1) - 1)``; summed over K (bounding a
    block's maximum by the row's / column's), plus fp32 rounding of the result."""
    rel = 1.0 / (2 ** (mant_bits - 1) - 1)
    ax, aw = np.abs(x).astype(np.float64), np.abs(w).astype(np.float64)
    xmax, wmax = ax.max(axis=-1, keepdims=True), aw.max(axis=0, keepdims=True)
    return rel * (xmax * aw.sum(axis=0) + ax.sum(axis=-1, keepdims=True) * wmax) * 1.01 + 1e-6 * (ax @ aw) + 1e-30


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(1234)
