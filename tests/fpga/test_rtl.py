"""One test body, two engines: whole models on the golden model and on the Verilated RTL.

Every matrix tile of the RTL run goes through the Verilog systolic array; outputs must
be bit-identical, and the array's own cycle counters must equal the cycle model's
figure for the program's matrix instructions.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from backends.base import BackendUnavailable
from backends.fpga import matunit
from backends.fpga.isa import WeightTiles
from hw import cycles
from hw.config import DEFAULT, preset
from hw.random_tiles import KINDS, random_tile
from serve.deploy import prepare
from tests.fpga.conftest import CNTK_MNIST, fpga


def _verilator() -> bool:
    from hw.toolchain import ToolMissing, find_verilator

    try:
        find_verilator()
        return True
    except ToolMissing:
        return False


pytestmark = pytest.mark.skipif(not _verilator(), reason="Verilator not installed")


def _pair(model, formats):
    try:
        rtl = fpga(model, formats, fpga_sim="rtl")
    except BackendUnavailable as exc:  # the build failed: say why, do not hide it
        pytest.fail(f"RTL engine unavailable: {exc}")
    return fpga(model, formats), rtl


@pytest.mark.skipif(not CNTK_MNIST.exists(), reason=f"{CNTK_MNIST} not present")
@pytest.mark.parametrize("precision", ["msfp16", "fp32"])  # fp32: the widest setting, 16-bit mantissas
def test_cntk_mnist_golden_and_rtl_are_identical_and_cycle_counts_agree(precision):
    prepared = prepare([CNTK_MNIST], backend="fpga", precision=precision, trial_load=False)
    golden, rtl = _pair(onnx.load_from_string(prepared.model_bytes), prepared.config.layer_formats)
    for i in range(3):
        x = numpy_helper.to_array(onnx.load_tensor(str(CNTK_MNIST.parent / f"test_data_set_{i}" / "input_0.pb")))
        before = rtl.engine.load_cycles + rtl.engine.tile_cycles
        a, b = golden.run({"Input3": x}), rtl.run({"Input3": x})
        assert np.array_equal(a["Plus214_Output_0"], b["Plus214_Output_0"])
        measured = rtl.engine.load_cycles + rtl.engine.tile_cycles - before
        assert measured == golden.cost.matmul_cycles
    assert rtl.last_device_stats() == golden.last_device_stats()
    rtl.close()


def test_gru_golden_and_rtl_are_identical(rng):
    from tests.fpga.test_rnn import rnn_model

    model = rnn_model("GRU", "forward", rng, linear_before_reset=1)
    golden, rtl = _pair(model, {"W": "msfp16", "R": "msfp16"})
    x = rng.standard_normal((25, 1, 48)).astype(np.float32)
    a, b = golden.run({"x": x}), rtl.run({"x": x})
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert rtl.engine.load_cycles + rtl.engine.tile_cycles == golden.cost.matmul_cycles
    rtl.close()


@pytest.mark.parametrize("cfg", [DEFAULT, preset("small")], ids=lambda c: c.name())
@pytest.mark.parametrize("chunk", [None, 1])  # 1: the accumulator exponents one K-tile at a time
def test_rtl_engine_equals_tile_matmul_tile_by_tile(cfg, chunk, rng, monkeypatch):
    """All tiles of a product in one run_tiles call: (group, K-tile) inputs shared by the
    N-tiles, every tile kind, the same bits as hw.golden.tile_matmul and the cycle model."""
    if chunk:
        monkeypatch.setattr(matunit, "_CHUNK", chunk)
    g, nk, nn, t = 2, 3, 2, 5
    tiles = [[[random_tile(cfg, rng, t, KINDS[(a + b + c) % len(KINDS)]) for c in range(nn)] for b in range(nk)]
             for a in range(g)]
    w = WeightTiles(np.array([[[x.w_mant for x in row] for row in grp] for grp in tiles]),
                    np.array([[[x.w_exp for x in row] for row in grp] for grp in tiles]), nk * cfg.rows, nn * cfg.cols)
    xm = np.array([[row[0].x_mant for row in grp] for grp in tiles])
    xe = np.array([[row[0].x_exp for row in grp] for grp in tiles])
    engine = matunit.RtlEngine(cfg)
    try:
        assert np.array_equal(engine(cfg, w, xm, xe), matunit.tile_by_tile(cfg, w, xm, xe))
        assert engine.load_cycles == g * nk * nn * cycles.load_cycles(cfg)
        assert engine.tile_cycles == g * nk * nn * cycles.tile_cycles(cfg, t)
    finally:
        engine.close()
