"""Narrow number formats: one table of element types and block formats, and the
numpy functions that quantise to them.

Two layers, as in the OCP Microscaling (MX) v1.0 spec and Microsoft's MSFP papers:

* an **element type** (``Element``): what one value in a block keeps — a sign and a few
  bits, either a small integer (BFP, MXINT8) or a minifloat (MXFP8/6/4);
* a **format** (``Format``): an element type plus how values share a scale — a block of
  ``B`` values along the reduction axis shares one power-of-two scale of ``e`` bits.

Why our own code: the MX reference (microsoft/microxcaling) is PyTorch/CUDA, and
ml_dtypes casts single elements but has no block scaling, no BFP and NaN-on-overflow
for FP8. The tests check these functions against ml_dtypes' element decodings, the MX
spec's published constants and onnxruntime, so the code here is never its own reference.

Conventions that hold for every block format here:

* the block's scale is ``2**X`` with ``X = floor(log2(max|v|)) - emax_elem`` (MX v1.0,
  section 6.3), clamped to what an ``e``-bit exponent holds, ``[-(2**(e-1)-1),
  2**(e-1)-1]`` (E8M0: 2**-127 .. 2**127; code 0xFF is NaN and never produced). An
  all-zero block gets the smallest scale. Inputs must be finite;
* each element ``v / 2**X`` is rounded to nearest, ties to even, then clamped to the
  element's largest normal keeping its sign (MX: "saturating" conversion; no Inf/NaN);
* integer elements are sign + magnitude (Brainwave's BFP layout) with an implicit
  binary point after the magnitude's top bit: sign + ``m`` bits holds ``k * 2**-(m-1)``,
  ``|k| <= 2**m - 1``. They are symmetric: MXINT8's two's-complement code -128 (= -2.0
  in the spec) is never produced, exactly as the spec's max normal 1 63/64 implies.
"""
from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

import numpy as np


class Specials(enum.Enum):
    """Which codes of a minifloat are not finite numbers."""

    NONE = "none"  # FP4/FP6: every code is a number, so the top binade is usable
    NAN_ONLY = "nan"  # FP8 E4M3 ("fn"): only S.1111.111 is NaN; no infinities
    IEEE = "ieee"  # FP8 E5M2: top exponent field is Inf/NaN, as in IEEE 754


@dataclass(frozen=True, slots=True)
class ElementSpec:
    """Parameters of one element type; derived limits are properties."""

    ebits: int  # exponent field bits; 0 for integers
    mbits: int  # mantissa (fraction) bits; for integers: magnitude bits - 1
    bias: int  # exponent bias; 0 for integers
    specials: Specials = Specials.NONE

    @property
    def is_int(self) -> bool:
        return self.ebits == 0

    @property
    def bits(self) -> int:
        """Storage bits: sign + exponent + mantissa (+ the integer's top bit)."""
        return 1 + self.ebits + self.mbits + (1 if self.is_int else 0)

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal (integers: fixed at 0)."""
        return 0 if self.is_int else 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest normal: the ``emax_elem`` of the MX scale rule."""
        if self.is_int:
            return 0
        top = 2**self.ebits - 1 - (1 if self.specials is Specials.IEEE else 0)
        return top - self.bias

    @property
    def max_normal(self) -> float:
        if self.is_int:
            return (2 ** (self.mbits + 1) - 1) * 2.0**-self.mbits
        # E4M3 loses its top mantissa code to NaN, so its largest is 1.110b, not 1.111b.
        top_mant = 2**self.mbits - 1 - (1 if self.specials is Specials.NAN_ONLY else 0)
        return (1 + top_mant * 2.0**-self.mbits) * 2.0**self.emax

    @property
    def min_normal(self) -> float:
        """Smallest normal (integers: smallest nonzero, one step)."""
        return 2.0**-self.mbits if self.is_int else 2.0**self.emin


class Element(enum.Enum):
    """Element types. Quirks are in the comments: they are where formats differ."""

    # Sign + 2-bit magnitude: ms-fp8's element, values k/2, |k| <= 3.
    INT3 = ElementSpec(0, 1, 0)
    # Sign + 3-bit magnitude: MSFP12 / ms-fp9, values k/4, |k| <= 7 (no -8: symmetric).
    INT4 = ElementSpec(0, 2, 0)
    # Sign + 7-bit magnitude: MSFP16 and MXINT8, values k/64, |k| <= 127, max 1 63/64.
    INT8 = ElementSpec(0, 6, 0)
    # E2M1: max 6, min normal 1, one subnormal 0.5; no Inf/NaN.
    FP4_E2M1 = ElementSpec(2, 1, 1)
    # E2M3: max 7.5, min normal 1, subnormals step 1/8; no Inf/NaN.
    FP6_E2M3 = ElementSpec(2, 3, 1)
    # E3M2: max 28, min normal 1/4, subnormals step 1/16; no Inf/NaN.
    FP6_E3M2 = ElementSpec(3, 2, 3)
    # E4M3 as in ONNX FLOAT8E4M3FN: max 448, min normal 2**-6; S.1111.111 is NaN, no Inf.
    FP8_E4M3 = ElementSpec(4, 3, 7, Specials.NAN_ONLY)
    # E5M2, IEEE-like: max 57344, min normal 2**-14; Inf and NaN exist but are never
    # produced here (MX saturates).
    FP8_E5M2 = ElementSpec(5, 2, 15, Specials.IEEE)

    @property
    def spec(self) -> ElementSpec:
        return self.value


class Family(enum.Enum):
    BFP = "bfp"  # Brainwave / MSFP block floating point: integer elements, shared exponent
    MX = "mx"  # OCP MX v1.0: blocks of 32, E8M0 scale
    INT8 = "int8"  # onnxruntime.quantization's affine int8 (weights and activations)
    IEEE = "ieee"  # plain fp16 / fp32


@dataclass(frozen=True, slots=True)
class FormatSpec:
    family: Family
    element: Element | None = None  # None for IEEE and INT8
    block_size: int = 0  # values sharing one scale, along the reduction axis
    scale_bits: int = 0  # bits of the shared exponent (E8M0: 8)
    plain_bits: int = 0  # IEEE / INT8 bits per value

    @property
    def bits_per_weight(self) -> float:
        """Storage cost per value, the shared scale amortised over its block."""
        if self.element is None:
            return float(self.plain_bits)
        return self.element.spec.bits + self.scale_bits / self.block_size

    @property
    def scale_exp_range(self) -> tuple[int, int]:
        """Exponents a ``scale_bits``-bit shared exponent holds (E8M0: -127..127)."""
        top = 2 ** (self.scale_bits - 1) - 1
        return -top, top


class Format(enum.Enum):
    """Whole-tensor formats, by the names the CLI and ``ModelConfig`` use."""

    # MSFP (Rouhani et al., NeurIPS 2020): 8-bit shared exponent per 16 values.
    MSFP16 = "msfp16"  # sign + 7 bits
    MSFP12 = "msfp12"  # sign + 3 bits
    # Brainwave ISCA'18 ms-fp9 / ms-fp8: 5-bit shared exponent (2**-15 .. 2**15, values
    # beyond saturate). Brainwave shared it over a native vector; we use blocks of 16.
    MSFP9 = "msfp9"  # sign + 3 bits
    MSFP8 = "msfp8"  # sign + 2 bits
    # OCP MX v1.0 concrete formats: blocks of 32, E8M0 scale.
    MXINT8 = "mxint8"
    MXFP8_E4M3 = "mxfp8_e4m3"
    MXFP8_E5M2 = "mxfp8_e5m2"
    MXFP6_E3M2 = "mxfp6_e3m2"
    MXFP6_E2M3 = "mxfp6_e2m3"
    MXFP4_E2M1 = "mxfp4_e2m1"
    # onnxruntime.quantization's int8 (see models.quantize.int8): activations too.
    INT8 = "int8"
    FP16 = "fp16"  # IEEE half; values beyond 65504 become Inf (weights never are)
    FP32 = "fp32"

    @property
    def spec(self) -> FormatSpec:
        return format_spec(self)


@functools.cache
def format_spec(fmt: Format) -> FormatSpec:
    """The one table from format to parameters."""
    table = {
        Format.MSFP16: FormatSpec(Family.BFP, Element.INT8, 16, 8),
        Format.MSFP12: FormatSpec(Family.BFP, Element.INT4, 16, 8),
        Format.MSFP9: FormatSpec(Family.BFP, Element.INT4, 16, 5),
        Format.MSFP8: FormatSpec(Family.BFP, Element.INT3, 16, 5),
        Format.MXINT8: FormatSpec(Family.MX, Element.INT8, 32, 8),
        Format.MXFP8_E4M3: FormatSpec(Family.MX, Element.FP8_E4M3, 32, 8),
        Format.MXFP8_E5M2: FormatSpec(Family.MX, Element.FP8_E5M2, 32, 8),
        Format.MXFP6_E3M2: FormatSpec(Family.MX, Element.FP6_E3M2, 32, 8),
        Format.MXFP6_E2M3: FormatSpec(Family.MX, Element.FP6_E2M3, 32, 8),
        Format.MXFP4_E2M1: FormatSpec(Family.MX, Element.FP4_E2M1, 32, 8),
        Format.INT8: FormatSpec(Family.INT8, plain_bits=8),
        Format.FP16: FormatSpec(Family.IEEE, plain_bits=16),
        Format.FP32: FormatSpec(Family.IEEE, plain_bits=32),
    }
    return table[fmt]


def parse_format(name: str) -> Format:
    """``Format`` by name, with the accepted names in the error."""
    try:
        return Format(name.lower())
    except ValueError:
        names = ", ".join(f.value for f in Format)
        raise ValueError(f"unknown precision {name!r}; expected one of: {names}") from None


def floor_log2(a: np.ndarray) -> np.ndarray:
    """Exact ``floor(log2(a))`` for a > 0 (frexp, not log2, so no rounding at 2**k)."""
    return np.frexp(a)[1] - 1


# Each float type's exponent bits, read through a same-sized integer view.
_EXPONENT_FIELD = {np.dtype(np.float64): np.int64(0x7FF0_0000_0000_0000), np.dtype(np.float32): np.int32(0x7F80_0000)}


def _float(x) -> np.ndarray:
    """float32 stays float32, anything else becomes float64. Either is exact for what is
    done here to a float32 input: scaling by powers of two whose results a narrow
    element can hold (values that underflow would round to zero anyway), rounding to a
    grid of at most 8 significant bits, and one rounding back to float32 at the end."""
    x = np.asarray(x)
    return x if x.dtype == np.float32 else x.astype(np.float64)


def round_elements(v: np.ndarray, element: Element) -> np.ndarray:
    """Round already-scaled values to ``element``: nearest, ties to even, then saturate.

    Works in float32 for float32 input, else in float64; every step below is exact: the
    grid step is a power of two, so dividing by it and multiplying back lose nothing,
    and the sign rides along (ties to even is symmetric). In place where it can be:
    activations on the fpga path come through here by the million.
    """
    el = element.spec
    v = _float(v)
    if el.is_int:
        step = v.dtype.type(2.0**-el.mbits)  # integers: the exponent never moves
    else:
        # 2**floor(log2|v|) is v with its sign and mantissa bits cleared. Below emin: the
        # subnormal grid; above emax only saturation is left (and inf stays inf).
        bits = v.view(_EXPONENT_FIELD[v.dtype].dtype)
        step = np.bitwise_and(bits, _EXPONENT_FIELD[v.dtype], out=np.empty_like(bits)).view(v.dtype)
        np.clip(step, 2.0**el.emin, 2.0**el.emax, out=step)
        step *= 2.0**-el.mbits
    q = np.divide(v, step, out=np.empty_like(v))
    np.round(q, out=q)  # ties to even
    q *= step
    return np.clip(q, -el.max_normal, el.max_normal, out=q)


@dataclass(frozen=True, slots=True)
class BlockQuantized:
    """A tensor in a block format: element values times per-block powers of two.

    ``elements`` has the input's shape and holds values exactly representable in the
    format's element type (in the element's own units); ``scale_exp`` has the input's
    shape with ``axis`` shortened to ``ceil(n / block_size)`` — the layout of ONNX's
    blocked ``DequantizeLinear`` scale. The last block may be short (zero-padded).
    """

    fmt: Format
    axis: int
    elements: np.ndarray
    scale_exp: np.ndarray

    def dequantize(self) -> np.ndarray:
        """Back to float32 (exact: element times a power of two)."""
        b = self.fmt.spec.block_size
        n = self.elements.shape[self.axis]
        scale = np.repeat(np.ldexp(1.0, self.scale_exp), b, axis=self.axis)
        scale = scale[(slice(None),) * self.axis + (slice(0, n),)]
        return (self.elements * scale).astype(np.float32)


def quantize_blocks(x: np.ndarray, fmt: Format, axis: int = -1) -> BlockQuantized:
    """Quantise ``x`` to a BFP or MX ``fmt`` in blocks along ``axis`` (the reduction axis)."""
    axis, elements, shared, n = _blocks(x, fmt, axis)
    return BlockQuantized(fmt, axis, _unblock(elements, n, axis), np.moveaxis(shared, -1, axis))


def _blocks(x: np.ndarray, fmt: Format, axis: int) -> tuple[int, np.ndarray, np.ndarray, int]:
    """``x`` in ``fmt`` with ``axis`` moved last and cut into zero-padded blocks: the
    axis (non-negative), the elements ``(..., nblocks, block)``, their shared exponents
    ``(..., nblocks)``, and the axis' own length."""
    spec = fmt.spec
    if spec.element is None:
        raise ValueError(f"{fmt.value} is not a block format")
    x = _float(x)
    axis = axis % x.ndim
    b = spec.block_size
    moved = np.moveaxis(x, axis, -1)
    n = moved.shape[-1]
    nblocks = -(-n // b)
    padded = moved
    if n != nblocks * b:
        padded = np.zeros(moved.shape[:-1] + (nblocks * b,), x.dtype)
        padded[..., :n] = moved  # zero padding never raises a block's max
    blocks = padded.reshape(moved.shape[:-1] + (nblocks, b))
    amax = np.max(np.abs(blocks), axis=-1)
    if not np.all(np.isfinite(amax)):  # a block's max is NaN or Inf if any value is
        raise ValueError("cannot quantise non-finite values (NaN/Inf)")
    lo, hi = spec.scale_exp_range
    with np.errstate(divide="ignore"):
        shared = np.where(amax > 0, floor_log2(amax), lo) - spec.element.spec.emax
    shared = np.clip(shared, lo, hi).astype(np.int32)
    scaled = blocks * np.ldexp(x.dtype.type(1.0), -shared)[..., None]  # a power of two: exact
    return axis, round_elements(scaled, spec.element), shared, n


def _unblock(blocked: np.ndarray, n: int, axis: int) -> np.ndarray:
    """``_blocks``' layout back to the input's: padding dropped, ``axis`` in place."""
    return np.moveaxis(blocked.reshape(blocked.shape[:-2] + (-1,))[..., :n], -1, axis)


def fake_quantize(x: np.ndarray, fmt: Format, axis: int = -1) -> np.ndarray:
    """Quantise then dequantise (float32 out): what a layer computes with in ``fmt``."""
    family = fmt.spec.family
    if family in (Family.BFP, Family.MX):
        # quantize_blocks(x, fmt, axis).dequantize(), without spreading the scales out
        axis, elements, shared, n = _blocks(x, fmt, axis)
        # Exact in float64; in float32 it rounds only where the cast below would.
        elements *= np.ldexp(elements.dtype.type(1.0), shared)[..., None]
        return _unblock(elements, n, axis).astype(np.float32)
    if fmt is Format.FP16:
        return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)
    if fmt is Format.FP32:
        return np.asarray(x, dtype=np.float32)
    from models.quantize.int8 import fake_quantize_int8  # onnxruntime's own int8 rule

    return fake_quantize_int8(x)
