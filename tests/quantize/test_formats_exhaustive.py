"""Every code of every narrow element type, checked against ml_dtypes and the MX spec.

ml_dtypes (Google's numpy float8/6/4 types, installed with onnx) is the independent
reference for the minifloats; the MX v1.0 spec's published constants pin the limits.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from models.quantize import codes
from models.quantize.formats import Element, Format, round_elements

# ml_dtypes types with the same encodings as the MX element types.
REFERENCE = {
    Element.FP4_E2M1: ml_dtypes.float4_e2m1fn,
    Element.FP6_E2M3: ml_dtypes.float6_e2m3fn,
    Element.FP6_E3M2: ml_dtypes.float6_e3m2fn,
    Element.FP8_E4M3: ml_dtypes.float8_e4m3fn,
    Element.FP8_E5M2: ml_dtypes.float8_e5m2,
}


def same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Equal as bit patterns would be: NaN equals NaN, -0 differs from +0."""
    both_nan = np.isnan(a) & np.isnan(b)
    return both_nan | ((a == b) & (np.signbit(a) == np.signbit(b)))


def assert_codes(element: Element, code_list: np.ndarray, got: np.ndarray, want: np.ndarray) -> None:
    """Fail with the first mismatching code split into sign, exponent and mantissa."""
    bad = np.flatnonzero(~same(np.asarray(got, float), np.asarray(want, float)))
    if bad.size:
        i = bad[0]
        c = int(code_list[i])
        pytest.fail(
            f"{element.name}: {bad.size} mismatches; first code {c:#0{element.spec.bits + 2}b} "
            f"({codes.split(c, element)}): got {got[i]!r}, want {want[i]!r}"
        )


@pytest.mark.parametrize("element", list(REFERENCE), ids=lambda e: e.name)
def test_decode_matches_ml_dtypes(element: Element) -> None:
    c = codes.all_codes(element)
    theirs = c.astype(np.uint8).view(REFERENCE[element]).astype(np.float64)
    assert_codes(element, c, codes.decode(c, element), theirs)


@pytest.mark.parametrize("element", list(Element), ids=lambda e: e.name)
def test_every_code_round_trips(element: Element) -> None:
    c = codes.all_codes(element)
    values = codes.decode(c, element)
    finite = np.isfinite(values)
    # Only FP8 has non-finite codes: E4M3 two NaNs, E5M2 two Infs and six NaNs.
    assert np.count_nonzero(~finite) == {Element.FP8_E4M3: 2, Element.FP8_E5M2: 8}.get(element, 0)
    c, values = c[finite], values[finite]
    assert_codes(element, c, round_elements(values, element), values)  # quantise is exact on the grid
    assert_codes(element, c, codes.encode(values, element), c)  # and the bits come back


@pytest.mark.parametrize("element", list(Element), ids=lambda e: e.name)
def test_midpoints_round_to_even(element: Element) -> None:
    c = codes.all_codes(element)
    values = codes.decode(c, element)
    keep = np.isfinite(values) & ~np.signbit(values)
    grid, grid_codes = values[keep], c[keep]
    order = np.argsort(grid)
    grid, grid_codes = grid[order], grid_codes[order]
    mid = (grid[:-1] + grid[1:]) / 2  # exact in float64
    # The neighbour whose code ends in 0 is the even one (mantissa LSB, or magnitude LSB).
    lower_even = grid_codes[:-1] % 2 == 0
    want = np.where(lower_even, grid[:-1], grid[1:])
    assert_codes(element, grid_codes[:-1], round_elements(mid, element), want)
    assert_codes(element, grid_codes[:-1], round_elements(-mid, element), -want)
    if element in REFERENCE:  # ml_dtypes casts round to nearest even as well
        ref = mid.astype(np.float32).astype(REFERENCE[element]).astype(np.float64)
        assert_codes(element, grid_codes[:-1], round_elements(mid, element), ref)


@pytest.mark.parametrize("element", list(REFERENCE), ids=lambda e: e.name)
def test_random_values_round_like_ml_dtypes(element: Element) -> None:
    rng = np.random.default_rng(0)
    top = element.spec.max_normal
    x = np.concatenate([rng.uniform(-top, top, 20000), rng.normal(0, element.spec.min_normal, 20000)])
    x = x.astype(np.float32).astype(np.float64)
    ref = x.astype(np.float32).astype(REFERENCE[element]).astype(np.float64)
    got = round_elements(x, element)
    bad = np.flatnonzero(~same(got, ref))
    assert bad.size == 0, f"{element.name}: {x[bad[0]]!r} -> {got[bad[0]]!r}, ml_dtypes {ref[bad[0]]!r}"


# OCP MX v1.0, tables 1-3: largest normals and smallest normals of each element type.
SPEC_LIMITS = {
    Element.FP8_E4M3: (448.0, 2.0**-6),
    Element.FP8_E5M2: (57344.0, 2.0**-14),
    Element.FP6_E3M2: (28.0, 2.0**-2),
    Element.FP6_E2M3: (7.5, 1.0),
    Element.FP4_E2M1: (6.0, 1.0),
    Element.INT8: (1 + 63 / 64, 1 / 64),  # MXINT8: implicit scale 2**-6
}


@pytest.mark.parametrize("element", list(SPEC_LIMITS), ids=lambda e: e.name)
def test_spec_limits(element: Element) -> None:
    max_normal, min_normal = SPEC_LIMITS[element]
    assert element.spec.max_normal == max_normal
    assert element.spec.min_normal == min_normal
    values = codes.decode(codes.all_codes(element), element)
    assert np.nanmax(values[np.isfinite(values)]) == max_normal
    if element in REFERENCE:
        assert float(ml_dtypes.finfo(REFERENCE[element]).max) == max_normal


@pytest.mark.parametrize("element", list(Element), ids=lambda e: e.name)
def test_values_beyond_max_saturate_keeping_sign(element: Element) -> None:
    top = element.spec.max_normal
    x = np.array([top * 1.01, top * 1.2, top * 1000, 3.0e38, -top * 1.01, -3.0e38])
    np.testing.assert_array_equal(round_elements(x, element), np.sign(x) * top)


def test_e8m0_scale_limits() -> None:
    mx = [f for f in Format if f.value.startswith("mx")]
    assert len(mx) == 6
    e8m0 = ml_dtypes.float8_e8m0fnu
    for fmt in mx:
        assert fmt.spec.block_size == 32 and fmt.spec.scale_bits == 8
        lo, hi = fmt.spec.scale_exp_range
        # E8M0: bias 127, codes 0..254 are 2**-127 .. 2**127, 0xFF is NaN.
        assert 2.0**lo == float(np.array([0], np.uint8).view(e8m0)[0]) == float(ml_dtypes.finfo(e8m0).tiny)
        assert 2.0**hi == float(np.array([254], np.uint8).view(e8m0)[0]) == float(ml_dtypes.finfo(e8m0).max)
    assert np.isnan(float(np.array([255], np.uint8).view(e8m0)[0]))
