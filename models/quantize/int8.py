"""int8 through onnxruntime's own quantisation tools (``onnxruntime.quantization``).

We do not reimplement int8: onnxruntime's tools pick scales, insert QDQ pairs and are
what its kernels are tuned for. Unlike the block formats, this quantises activations too
(static QDQ with calibration data; dynamic, at run time, without), so it is a whole-model
choice and never one of the per-layer candidates of ``--precision auto``.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx


def fake_quantize_int8(x: np.ndarray) -> np.ndarray:
    """Per-tensor symmetric int8 round trip, by onnxruntime's weight rule (``quantize_data``)."""
    from onnxruntime.quantization import quant_utils

    data = np.asarray(x, dtype=np.float32)
    zero_point, scale, q = quant_utils.quantize_data(data.ravel(), onnx.TensorProto.INT8, symmetric=True)
    deq = (q.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return deq.reshape(data.shape)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over an array of samples."""

    def __init__(self, input_name: str, samples: list[np.ndarray]) -> None:
        self._feeds = iter([{input_name: s} for s in samples])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantize_int8(model: onnx.ModelProto, samples: list[np.ndarray] | None) -> onnx.ModelProto:
    """int8 weights and activations: static QDQ (per-channel weights) when calibration
    ``samples`` (model-shaped float32 inputs) are given, else dynamic quantisation."""
    from onnxruntime.quantization import QuantFormat, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        raw, src, dst = Path(tmp) / "raw.onnx", Path(tmp) / "in.onnx", Path(tmp) / "out.onnx"
        onnx.save(model, raw)
        # onnxruntime's recommended clean-up; its symbolic shape pass needs sympy, and
        # ONNX's own shape inference covers standard models.
        quant_pre_process(raw, src, skip_symbolic_shape=True)
        if samples:
            reader = _Reader(model.graph.input[0].name, samples)
            # The int32-bias weight-scale adjustment indexes a Gemm bias of shape [1, N]
            # as if it were [N] and fails (onnxruntime 1.32); it only matters for
            # near-zero weight scales, so it is switched off.
            options = {"QDQDisableWeightAdjustForInt32Bias": True}
            quantize_static(src, dst, reader, quant_format=QuantFormat.QDQ, per_channel=True, extra_options=options)
        else:
            quantize_dynamic(src, dst)
        return onnx.load(dst)
