"""Block scaling: the MX v1.0 scale rule on known values, and properties over random data."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from models.quantize.formats import Family, Format, fake_quantize, parse_format, quantize_blocks

BLOCK_FORMATS = [f for f in Format if f.spec.family in (Family.BFP, Family.MX)]
PROPERTY = settings(max_examples=40, deadline=None)


def test_mxfp8_e4m3_clamps_top_of_binade_to_448() -> None:
    # max|v| = 480: X = floor(log2 480) - 8 = 0, and 480 > 448 saturates (spec section 6.3).
    x = np.array([480.0, -480.0, 1.0] + [0.0] * 29)
    q = quantize_blocks(x, Format.MXFP8_E4M3)
    assert q.scale_exp.tolist() == [0]
    assert q.dequantize()[:3].tolist() == [448.0, -448.0, 1.0]


@pytest.mark.parametrize(
    ("fmt", "emax_elem"),
    [
        (Format.MXINT8, 0),
        (Format.MXFP8_E4M3, 8),
        (Format.MXFP8_E5M2, 15),
        (Format.MXFP6_E3M2, 4),
        (Format.MXFP6_E2M3, 2),
        (Format.MXFP4_E2M1, 2),
    ],
)
def test_mx_scale_is_floor_log2_amax_minus_emax(fmt: Format, emax_elem: int) -> None:
    x = np.zeros(64)
    x[3], x[40] = 0.7, -5.5  # block 0: floor(log2 0.7) = -1; block 1: floor(log2 5.5) = 2
    assert quantize_blocks(x, fmt).scale_exp.tolist() == [-1 - emax_elem, 2 - emax_elem]


def test_e8m0_limits_clamp_the_scale() -> None:
    tiny = np.full(32, 2.0**-140)  # wants X = -140 - 0: clamped to E8M0's 2**-127
    q = quantize_blocks(tiny, Format.MXINT8)
    assert q.scale_exp.tolist() == [-127]
    assert np.all(q.dequantize() == 0)  # 2**-140 is below half a step of 2**-133
    huge = np.full(32, 3.0e38)  # floor(log2) = 127, the top of float32 and of E8M0
    assert quantize_blocks(huge, Format.MXINT8).scale_exp.tolist() == [127]
    zeros = quantize_blocks(np.zeros(32), Format.MXFP4_E2M1)
    assert zeros.scale_exp.tolist() == [-127] and np.all(zeros.dequantize() == 0)


def test_bfp_five_bit_exponent_saturates() -> None:
    x = np.full(16, 2.0**20)  # ms-fp8's shared exponent stops at 2**15
    q = quantize_blocks(x, Format.MSFP8)
    assert q.scale_exp.tolist() == [15]
    assert np.all(q.dequantize() == 1.5 * 2.0**15)  # sign + 2 bits: max 1.1b


def test_msfp12_known_block() -> None:
    # max 0.9 -> X = -1; elements k/4 * 2**-1, |k| <= 7: 0.9 -> 7/8 (saturated 0.875).
    x = np.array([0.9, 0.3, -0.2, 0.0625] + [0.0] * 12)
    got = quantize_blocks(x, Format.MSFP12).dequantize()
    assert got[:4].tolist() == [0.875, 0.25, -0.25, 0.0]  # 0.0625 = half a step: ties to even (0)


def test_non_finite_input_is_rejected() -> None:
    with pytest.raises(ValueError):
        quantize_blocks(np.array([1.0, np.nan]), Format.MXFP8_E4M3)
    with pytest.raises(ValueError):
        parse_format("fp5")


def block_data():
    finite = st.floats(-1e6, 1e6, allow_nan=False, width=32)
    shapes = st.tuples(st.integers(1, 3), st.integers(1, 80))
    return hnp.arrays(np.float32, shapes, elements=finite)


@PROPERTY
@given(x=block_data(), fmt=st.sampled_from(BLOCK_FORMATS))
def test_quantise_is_idempotent(x: np.ndarray, fmt: Format) -> None:
    once = fake_quantize(x, fmt)
    np.testing.assert_array_equal(fake_quantize(once, fmt), once)


@PROPERTY
@given(x=block_data(), fmt=st.sampled_from(BLOCK_FORMATS))
def test_error_within_half_ulp_of_block(x: np.ndarray, fmt: Format) -> None:
    spec = fmt.spec
    el = spec.element.spec
    q = quantize_blocks(x, fmt, axis=1)
    out = q.dequantize().astype(np.float64)
    lo, hi = spec.scale_exp_range
    for r in range(x.shape[0]):
        for j in range(x.shape[1]):
            block = j // spec.block_size
            amax = float(np.max(np.abs(x[r, block * spec.block_size : (block + 1) * spec.block_size])))
            want_x = lo if amax == 0 else min(max(math.frexp(amax)[1] - 1 - el.emax, lo), hi)
            assert q.scale_exp[r, block] == want_x
            v, scale = float(x[r, j]), 2.0**want_x
            if abs(v) > el.max_normal * scale:  # beyond the element's max: saturated
                assert out[r, j] == math.copysign(el.max_normal * scale, v)
                continue
            exp = 0 if el.is_int else max(math.frexp(abs(v) / scale)[1] - 1 if v else el.emin, el.emin)
            ulp = 2.0 ** (exp - el.mbits) * scale
            assert abs(out[r, j] - v) <= ulp / 2, (v, out[r, j], ulp)


@PROPERTY
@given(x=block_data(), fmt=st.sampled_from(BLOCK_FORMATS), seed=st.integers(0, 2**16))
def test_blocks_are_independent(x: np.ndarray, fmt: Format, seed: int) -> None:
    b = fmt.spec.block_size
    if x.shape[1] <= b:
        x = np.concatenate([x, x * 0.5], axis=1)
    rng = np.random.default_rng(seed)
    changed = x.copy()
    changed[:, :b] = rng.normal(0, 1000, changed[:, :b].shape)  # rewrite block 0 only
    np.testing.assert_array_equal(fake_quantize(changed, fmt)[:, b:], fake_quantize(x, fmt)[:, b:])


@PROPERTY
@given(x=block_data(), fmt=st.sampled_from(BLOCK_FORMATS), axis=st.sampled_from([0, 1, -1]))
def test_fake_quantize_is_quantize_then_dequantize(x: np.ndarray, fmt: Format, axis: int) -> None:
    """fake_quantize takes a shortcut (scales applied per block, never spread out)."""
    want = quantize_blocks(x, fmt, axis=axis).dequantize()
    got = fake_quantize(x, fmt, axis=axis)
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))  # -0 stays -0


@PROPERTY
@given(x=block_data(), fmt=st.sampled_from(BLOCK_FORMATS))
def test_float32_input_quantises_as_float64_would(x: np.ndarray, fmt: Format) -> None:
    """float32 input is worked on in float32 (half the memory traffic): same answers."""
    tiny = x * np.float32(2.0**-120)  # values that underflow once scaled
    for data in (x, tiny):
        np.testing.assert_array_equal(fake_quantize(data, fmt), fake_quantize(data.astype(np.float64), fmt))
        q32, q64 = quantize_blocks(data, fmt), quantize_blocks(data.astype(np.float64), fmt)
        np.testing.assert_array_equal(q32.elements, q64.elements)
        np.testing.assert_array_equal(q32.scale_exp, q64.scale_exp)
