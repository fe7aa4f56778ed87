"""Encode float arrays in the array's block-floating-point operand format, and back.

A convenience for tests, benchmarks and the FPGA backend; the project's real
quantiser (formats chosen per layer) lives in ``models/quantize``. Blocks run along
the *last* axis here, so a weight matrix ``W`` (rows x cols) is encoded as
``encode(cfg, W.T)`` and transposed back.
"""
from __future__ import annotations

import numpy as np

from hw.config import HwConfig

__all__ = ["encode", "decode"]


def encode(cfg: HwConfig, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantise ``values`` (..., n*block) to ``(mantissas, exponents)``.

    Each block's exponent is the smallest that makes its largest magnitude fit
    (clipped to the exponent range); mantissas are rounded to nearest even and
    clipped. Returns int64 arrays of shapes (..., n*block) and (..., n).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.shape[-1] % cfg.block:
        raise ValueError(f"last axis ({v.shape[-1]}) is not a multiple of the block size {cfg.block}")
    blocks = v.reshape(*v.shape[:-1], -1, cfg.block)
    peak = np.abs(blocks).max(axis=-1)
    with np.errstate(divide="ignore"):
        exp = np.ceil(np.log2(peak / cfg.mant_max))
    exp = np.where(peak > 0, exp, cfg.exp_min)
    exp = np.clip(exp, cfg.exp_min, cfg.exp_max).astype(np.int64)
    mant = np.rint(np.ldexp(blocks, -exp[..., None]))
    mant = np.clip(mant, cfg.mant_min, cfg.mant_max).astype(np.int64)
    return mant.reshape(v.shape), exp


def decode(cfg: HwConfig, mant: np.ndarray, exp: np.ndarray) -> np.ndarray:
    """The float64 values ``mant * 2**exp`` of encoded blocks (exact)."""
    m = np.asarray(mant, dtype=np.float64)
    blocks = m.reshape(*m.shape[:-1], -1, cfg.block)
    return np.ldexp(blocks, np.asarray(exp)[..., None]).reshape(m.shape)
