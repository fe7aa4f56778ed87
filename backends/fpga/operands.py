"""Float tensors -> the array's integer operands (mantissas and block exponents).

Two encodings, both ending in ``HwConfig``'s format (``mant_bits`` two's complement
mantissas, one ``exp_bits`` exponent per ``block`` values along K):

* a layer in a block format with integer elements (MSFP, MXINT8) is quantised by
  ``models.quantize`` itself (``quantize_blocks``), so the device computes with exactly
  the values the quantiser chose; an element ``k * 2**-mbits`` under scale ``2**X`` is
  the mantissa ``k`` with exponent ``X - mbits``, and a format block of ``B`` values is
  ``B / block`` hardware blocks sharing that exponent;
* anything else (fp32, fp16, MX minifloats) is rounded to the array's own widest
  format by ``hw.bfp.encode`` (after the layer format's own rounding, if any).

K is zero-padded to whole tiles; padded blocks carry the smallest exponent.
"""
from __future__ import annotations

import numpy as np

from hw import bfp
from hw.config import HwConfig, MvuConfig
from hw.mvu import cycles as mvu_cycles
from hw.mvu import golden
from models.quantize.formats import Format, fake_quantize, quantize_blocks

from backends.fpga.isa import MvuWeights, WeightTiles

Config = HwConfig | MvuConfig


def _ceil_to(n: int, m: int) -> int:
    return -(-n // m) * m


def _is_int_block(fmt: Format | None) -> bool:
    return fmt is not None and fmt.spec.element is not None and fmt.spec.element.spec.is_int


def encode_rows(cfg: Config, fmt: Format | None, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Encode ``x`` (..., K) with blocks along K: ``(mant (..., Kp), exp (..., Kp/block))``,
    ``Kp`` = K rounded up to whole array rows (systolic) or input words (MVU)."""
    k = x.shape[-1]
    kp = _ceil_to(k, cfg.lanes if isinstance(cfg, MvuConfig) else cfg.rows)
    if not _is_int_block(fmt):
        if fmt is not None:
            x = fake_quantize(x, fmt, axis=-1)
        padded = np.zeros(x.shape[:-1] + (kp,), np.float64)
        padded[..., :k] = x
        return bfp.encode(cfg, padded)
    q = quantize_blocks(x, fmt, axis=-1)
    mbits = fmt.spec.element.spec.mbits
    mant = np.zeros(x.shape[:-1] + (kp,), np.int64)
    mant[..., :k] = np.ldexp(q.elements, mbits).astype(np.int64)  # exact integers
    fb, hb = fmt.spec.block_size, cfg.block
    index = np.minimum(np.arange(kp // hb) * hb // fb, q.scale_exp.shape[-1] - 1)
    exp = q.scale_exp[..., index].astype(np.int64) - mbits
    exp[..., -(-k // hb):] = cfg.exp_min  # blocks wholly in the padding
    return _fit_exponents(cfg, mant, exp)


def _fit_exponents(cfg: Config, mant: np.ndarray, exp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blocks whose exponent is below the array's range lose their low mantissa bits
    (rounded to nearest even), as the hardware's input converter would."""
    if exp.size and exp.max() > cfg.exp_max:
        raise ValueError(f"block exponent {exp.max()} above the array's {cfg.exp_max}")
    short = exp < cfg.exp_min
    if not short.any():
        return mant, exp
    shift = np.repeat(np.where(short, cfg.exp_min - exp, 0), cfg.block, axis=-1)
    mant = np.rint(np.ldexp(mant.astype(np.float64), -shift)).astype(np.int64)
    return mant, np.maximum(exp, cfg.exp_min)


def encode_weights(cfg: HwConfig, fmt: Format | None, w: np.ndarray) -> WeightTiles:
    """Weights ``w`` (G, K, N) as array tiles, blocks along K."""
    g, k, n = w.shape
    mant, exp = encode_rows(cfg, fmt, np.swapaxes(w, 1, 2))  # (G, N, Kp), (G, N, Kp/block)
    np_ = _ceil_to(n, cfg.cols)
    nk, nn, nb = mant.shape[-1] // cfg.rows, np_ // cfg.cols, cfg.n_blocks
    mant = np.concatenate([mant, np.zeros((g, np_ - n, mant.shape[-1]), np.int64)], axis=1)
    exp = np.concatenate([exp, np.full((g, np_ - n, exp.shape[-1]), cfg.exp_min, np.int64)], axis=1)
    mant = mant.reshape(g, nn, cfg.cols, nk, cfg.rows).transpose(0, 3, 1, 4, 2)
    exp = exp.reshape(g, nn, cfg.cols, nk, nb).transpose(0, 3, 1, 4, 2)
    return WeightTiles(np.ascontiguousarray(mant), np.ascontiguousarray(exp), k, n)


def encode_vectors(cfg: HwConfig, fmt: Format | None, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Input vectors ``x`` (G, T, K) -> ``(mant (G, nk, T, rows), exp (G, nk, T, n_blocks))``."""
    g, t, _ = x.shape
    mant, exp = encode_rows(cfg, fmt, x)
    nk = mant.shape[-1] // cfg.rows
    mant = mant.reshape(g, t, nk, cfg.rows).transpose(0, 2, 1, 3)
    exp = exp.reshape(g, t, nk, cfg.n_blocks).transpose(0, 2, 1, 3)
    return mant, exp


def encode_mvu_weights(cfg: MvuConfig, fmt: Format | None, w: np.ndarray, whole_n: int = 0) -> MvuWeights:
    """Weights ``w`` (G, K, N) for the MVU: one row per output, blocks along K; a row
    slice of a product of ``whole_n`` outputs is laid out with the whole's K-split."""
    g, k, n = w.shape
    mant, exp = encode_rows(cfg, fmt, np.swapaxes(w, 1, 2))  # (G, N, Kp), (G, N, Kp/block)
    return MvuWeights(np.ascontiguousarray(mant), np.ascontiguousarray(exp), k, n,
                      mvu_cycles.best_shape(cfg, n, k, whole_n), blas_operands(cfg, mant))


def blas_operands(cfg: MvuConfig, mant: np.ndarray) -> tuple[np.ndarray, ...]:
    """``MvuWeights.blas_operands`` of mantissas ``mant`` (G, N, Kp): each group's exact
    float64 operand of the golden model."""
    return tuple(golden.weight_operand(cfg, m) for m in mant)


def encode_any_weights(cfg: Config, fmt: Format | None, w: np.ndarray) -> WeightTiles | MvuWeights:
    """Weights ``w`` (G, K, N) in the matrix engine's own layout."""
    return encode_mvu_weights(cfg, fmt, w) if isinstance(cfg, MvuConfig) else encode_weights(cfg, fmt, w)


def tile_count(cfg: HwConfig, groups: int, k: int, n: int) -> int:
    """Weight tiles a (G, K, N) matrix occupies (what pinning it costs in memory)."""
    return groups * (-(-k // cfg.rows)) * (-(-n // cfg.cols))


def tile_bytes(cfg: HwConfig, tiles: int) -> int:
    """On-chip bytes ``tiles`` weight tiles take (mantissas plus shared exponents)."""
    return int(np.ceil(tiles * cfg.rows * cfg.cols * cfg.weight_bits / 8))


def mvu_bytes(cfg: MvuConfig, words: int) -> int:
    """On-chip bytes ``words`` weight words take in every tile engine of one MVU."""
    return -(-int(words * cfg.tiles * cfg.dpes * cfg.lanes * cfg.weight_bits) // 8)
