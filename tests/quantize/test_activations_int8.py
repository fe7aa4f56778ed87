"""The FPGA's activation model and the numpy int8 rule from onnxruntime's tools."""
from __future__ import annotations

import numpy as np
import pytest

from models.quantize import Format, quantize_activations
from models.quantize.formats import fake_quantize


def test_activations_are_blocked_along_the_reduction_axis() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (2, 64)).astype(np.float32)
    x[0, 0] = 1000.0  # one outlier: only its own block of 32 loses precision
    q = quantize_activations(x, "mxfp4_e2m1")
    np.testing.assert_array_equal(q, fake_quantize(x, Format.MXFP4_E2M1, axis=-1))
    assert np.all(q[0, 1:32] == 0)  # swamped by the outlier's scale (2**7 * 6 max)
    assert np.count_nonzero(q[0, 32:]) > 20  # the next block is untouched by it
    np.testing.assert_array_equal(quantize_activations(x, Format.FP32), x)


def test_int8_activations_are_not_an_fpga_format() -> None:
    with pytest.raises(ValueError):
        quantize_activations(np.zeros(4, np.float32), "int8")


def test_int8_weight_rule_is_symmetric_max_over_127() -> None:
    x = np.array([-2.0, -0.5, 0.01, 1.0, 1.27], np.float32)
    scale = np.float32(2.0 / 127)  # symmetric: max |x| maps to 127
    want = np.round(x / scale).clip(-127, 127) * scale
    np.testing.assert_allclose(fake_quantize(x, Format.INT8), want, rtol=1e-6)
