"""Bit codes of element types: value <-> code, and a code split into its fields.

The hardware (and anyone writing an SRAM image) needs the bits, the tests need to walk
every code. Layouts: minifloats are sign | exponent | mantissa as in IEEE 754 / OCP MX;
integers are sign | magnitude (Brainwave BFP), so every code, -0 included, is a value.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.quantize.formats import Element, Specials


@dataclass(frozen=True, slots=True)
class Fields:
    """One code split into sign, exponent field and mantissa (magnitude for integers)."""

    sign: int
    exponent: int
    mantissa: int

    def __str__(self) -> str:
        return f"sign={self.sign} exponent={self.exponent:#b} mantissa={self.mantissa:#b}"


def all_codes(element: Element) -> np.ndarray:
    """Every code of ``element``, 0 .. 2**bits - 1."""
    return np.arange(2**element.spec.bits, dtype=np.int64)


def split(code: int, element: Element) -> Fields:
    el = element.spec
    mag_bits = el.bits - 1 - el.ebits
    return Fields(
        sign=(int(code) >> (el.bits - 1)) & 1,
        exponent=(int(code) >> mag_bits) & (2**el.ebits - 1),
        mantissa=int(code) & (2**mag_bits - 1),
    )


def decode(codes: np.ndarray, element: Element) -> np.ndarray:
    """Codes to values (float64); NaN / Inf codes decode to NaN / Inf."""
    el = element.spec
    c = np.asarray(codes, dtype=np.int64)
    mag_bits = el.bits - 1 - el.ebits
    sign = np.where((c >> (el.bits - 1)) & 1, -1.0, 1.0)
    mant = c & (2**mag_bits - 1)
    if el.is_int:
        return sign * np.ldexp(mant.astype(np.float64), -el.mbits)
    exp = (c >> el.mbits) & (2**el.ebits - 1)
    normal = np.ldexp((2**el.mbits + mant).astype(np.float64), exp - el.bias - el.mbits)
    subnormal = np.ldexp(mant.astype(np.float64), el.emin - el.mbits)
    value = sign * np.where(exp == 0, subnormal, normal)
    top = exp == 2**el.ebits - 1
    if el.specials is Specials.NAN_ONLY:
        value = np.where(top & (mant == 2**el.mbits - 1), np.nan, value)
    elif el.specials is Specials.IEEE:
        value = np.where(top, np.where(mant == 0, sign * np.inf, np.nan), value)
    return value


def encode(values: np.ndarray, element: Element) -> np.ndarray:
    """Values exactly representable in ``element`` to codes; anything else raises."""
    el = element.spec
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)) or np.any(np.abs(v) > el.max_normal):
        raise ValueError(f"values outside {element.name}'s finite range")
    sign = np.signbit(v).astype(np.int64) << (el.bits - 1)
    a = np.abs(v)
    if el.is_int:
        mag = np.ldexp(a, el.mbits)
        exp_field = np.zeros(a.shape, dtype=np.int64)
    else:
        subnormal = a < 2.0**el.emin  # zero included: exponent field 0
        e = np.maximum(np.frexp(a)[1] - 1, el.emin)
        frac = np.ldexp(a, el.mbits - e)  # 1.m * 2**mbits for normals
        mag = np.where(subnormal, frac, frac - 2**el.mbits)
        exp_field = np.where(subnormal, 0, e + el.bias)
    if np.any(mag != np.floor(mag)):
        raise ValueError(f"values not on {element.name}'s grid")
    return sign | (exp_field.astype(np.int64) << el.mbits) | mag.astype(np.int64)
