"""Activation quantisation, as the FPGA does it (the CPU and GPU keep float activations).

Brainwave's matrix unit multiplies two block-floating-point operands: the weights,
quantised offline, and the incoming vector, quantised on the fly into the same format so
that each block's dot product is integer (or narrow-float) arithmetic under one shared
exponent per operand. The FPGA golden model calls :func:`quantize_activations` on each
matrix-vector product's input; which format a layer uses is its weight's entry in
``ModelConfig.layer_formats`` (the model's ``bwserve.activations`` metadata says so too).

:class:`ActivationRule` names the two behaviours, so that the quantiser can score its
candidates under the one the target backend has (``models.quantize.fpga_eval``).
"""
from __future__ import annotations

import enum
from collections.abc import Iterable

import numpy as np

from models.quantize.formats import Format, fake_quantize, parse_format


class ActivationRule(enum.StrEnum):
    """What a backend does to each Conv/MatMul/Gemm input."""

    FLOAT = "float"  # cpu, gpu: float32 activations
    FPGA = "fpga"  # quantize_activations in the layer's weight format

    @property
    def description(self) -> str:
        if self is ActivationRule.FPGA:
            return "each Conv/MatMul/Gemm input quantised to its weight's format, as the fpga computes"
        return "float activations, as cpu and gpu compute"

    @classmethod
    def for_backends(cls, backends: Iterable[str]) -> ActivationRule:
        """The rule formats must hold under on ``backends`` (``serve deploy --backend``
        names): the fpga's when the model runs there at all."""
        return cls.FPGA if "fpga" in backends else cls.FLOAT


def quantize_activations(x: np.ndarray, fmt: Format | str, axis: int = -1) -> np.ndarray:
    """``x`` (float32) as the matrix unit sees it in ``fmt``: blocks along ``axis``, the
    reduction axis of the product (the last one for a vector times a ``[K, N]`` matrix,
    the im2col patch for a convolution). fp32 passes through; fp16 rounds to half."""
    fmt = parse_format(fmt) if isinstance(fmt, str) else fmt
    if fmt is Format.INT8:
        raise ValueError("int8 activations are onnxruntime's (QDQ), not the FPGA's")
    return fake_quantize(x, fmt, axis=axis)
