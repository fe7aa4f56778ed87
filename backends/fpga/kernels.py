"""Numpy semantics of the vector unit's data-movement and pooling instructions.

Each gathers its windows with one strided slice per kernel offset (a loop over the
kernel's few positions, vectorised over everything else).
"""
from __future__ import annotations

import numpy as np

from backends.fpga.isa import ConvGeometry, PoolGeometry


def _windows(xp: np.ndarray, kernel, strides, dilations, out_spatial) -> np.ndarray:
    """(N, C, *padded) -> (N, C, prod(kernel), *out_spatial): every window's elements."""
    n, c = xp.shape[:2]
    cols = np.empty((n, c, int(np.prod(kernel)), *out_spatial), xp.dtype)
    for i, off in enumerate(np.ndindex(*kernel)):
        sl = tuple(slice(k * d, k * d + s * (o - 1) + 1, s)
                   for k, d, s, o in zip(off, dilations, strides, out_spatial))
        cols[:, :, i] = xp[(slice(None), slice(None)) + sl]
    return cols


def _pad(x: np.ndarray, pads, value: float) -> np.ndarray:
    nd = x.ndim - 2
    if not any(pads):
        return x
    width = [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)]
    return np.pad(x, width, constant_values=value)


def im2col(x: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """Convolution patches: (G, N*prod(out), C/G*prod(kernel)), K ordered (c, k...) as
    ONNX's weight [O, C/G, *kernel] flattens."""
    cols = _windows(_pad(x, geom.pads, 0.0), geom.kernel, geom.strides, geom.dilations, geom.out_spatial)
    n, c, kp = cols.shape[:3]
    g = geom.groups
    cols = cols.reshape(n, g, c // g, kp, -1)  # (N, G, Cg, kp, out)
    return np.ascontiguousarray(cols.transpose(1, 0, 4, 2, 3)).reshape(g, -1, c // g * kp)


def pool(kind: str, x: np.ndarray, geom: PoolGeometry) -> np.ndarray:
    """Max or average pooling, ONNX semantics (pads, dilations, ceil_mode, count_include_pad)."""
    if kind == "max":
        cols = _windows(_pad(x, geom.pads, -np.inf), geom.kernel, geom.strides, geom.dilations, geom.out_spatial)
        return cols.max(axis=2).astype(np.float32)
    cols = _windows(_pad(x, geom.pads, 0.0), geom.kernel, geom.strides, geom.dilations, geom.out_spatial)
    total = cols.sum(axis=2, dtype=np.float32)
    # Divisor: window elements inside the input, plus the asked-for padding if it counts
    # (never ceil_mode's extra padding).
    nd = x.ndim - 2
    ones = np.ones((1, 1) + x.shape[2:], np.float32)
    if geom.count_include_pad:
        real = tuple(geom.pads[:nd]) + tuple(geom.real_ends)
        ones = _pad(ones, real, 1.0)
        extra = (0,) * nd + tuple(e - r for e, r in zip(geom.pads[nd:], geom.real_ends))
        ones = _pad(ones, extra, 0.0)
    else:
        ones = _pad(ones, geom.pads, 0.0)
    count = _windows(ones, geom.kernel, geom.strides, geom.dilations, geom.out_spatial).sum(axis=2)
    return (total / count).astype(np.float32)
