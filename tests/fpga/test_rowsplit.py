"""One product's output rows split over devices (``backends.fpga.rowsplit``, issue 18).

Each slice of a product accumulates at the whole product's exponent (agreed from every
slice's statistics) with the whole's split of the tile engines, so a row split gives
one big device's outputs bit for bit; the partitioner says which form it chose, the
link carries what the next products encode, and a model whose matrix is larger than a
device deploys over devices=auto and serves over gRPC, its per-device and link times
on /metrics.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from backends.base import ModelLoadFailed
from backends.fpga import isa
from backends.fpga.cycles import wire_bytes
from backends.fpga.rowsplit import GRANULE, ranges
from hw.config import MVU_DEFAULT
from hw.mvu import golden
from hw.mvu.cycles import best_shape
from tests.fpga.conftest import fpga, ort_run
from tests.fpga.test_rnn import rnn_model


def _rnn(op: str, rng, direction="forward", **kw):
    """An ONNX LSTM or GRU of 128 hidden units (4 slices of 32), 5 steps, input 64."""
    return rnn_model(op, direction, rng, hidden=128, inp=64, seq=5, **kw)


def _mlp(sizes):
    from models.examples import mlp

    return mlp.build(sizes)


MODELS = {
    "gru-lbr": (lambda rng: _rnn("GRU", rng, linear_before_reset=1), "x", (5, 1, 64)),
    "gru-reverse-batch2": (lambda rng: _rnn("GRU", rng, batch=2, direction="reverse"), "x", (5, 2, 64)),
    "lstm-bidirectional-peepholes": (lambda rng: _rnn("LSTM", rng, direction="bidirectional", peepholes=True),
                                     "x", (5, 1, 64)),
    "mlp": (lambda rng: _mlp((64, 256, 192, 10)), "input", (1, 64)),
}


@pytest.mark.parametrize("devices", ["2", "4"])
@pytest.mark.parametrize("name", MODELS)
def test_row_split_outputs_equal_one_big_device_bit_for_bit(name, devices, rng):
    make, input_name, shape = MODELS[name]
    model = make(rng)
    big = fpga(model, engine="mvu", weight_mem="1MiB")
    split = fpga(model, devices=devices, split="rows", weight_mem="1MiB")
    a = split.assignment
    assert a.form == "rows" and a.describe().startswith("row split:")
    assert set(a.homes) == set(range(int(devices)))  # every device holds a slice
    products = [i for i in split.program.body if isinstance(i, isa.MatMul) and i.acc]
    assert products and all(len(i.acc) == int(devices) for i in products)
    for _ in range(2):
        x = {input_name: rng.standard_normal(shape).astype(np.float32)}
        want, got = big.run(x), split.run(x)
        assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) for k in want)
        for value, ref in zip(got.values(), ort_run(model, x)):
            np.testing.assert_allclose(value, ref, atol=1e-4)  # fp32 layers: tests/fpga/test_rnn's tolerance


def test_a_slice_accumulates_at_the_whole_products_exponent_not_its_own():
    """Slice 1's rows alone would pick a finer exponent than the whole (whose rows 0-31
    are 2**30 larger) and round differently; from both slices' statistics it picks the
    whole's and its outputs are the whole's rows, bit for bit."""
    cfg, rng = MVU_DEFAULT, np.random.default_rng(3)
    wm = rng.integers(-127, 128, (64, 64))
    we = np.zeros((64, 64 // cfg.block), np.int64)
    we[:32], we[32:, 0] = 30, -40
    xm, xe = rng.integers(-127, 128, (3, 64)), np.zeros((3, 64 // cfg.block), np.int64)
    ops = lambda a, b: (golden.weight_operand(cfg, wm[a:b]), we[a:b], xm, xe)  # noqa: E731
    whole = golden.products(cfg, *ops(0, 64)).values()
    stats = [golden.slice_stats(cfg, *ops(a, b)) for a, b in ((0, 32), (32, 64))]
    agreed = golden.acc_exp_of_slices(cfg, stats)
    assert np.array_equal(agreed, golden.choose_acc_exp(cfg, wm, we, xm, xe))
    own = golden.products(cfg, *ops(32, 64)).values()
    assert not np.array_equal(own.astype(np.float32), whole[:, 32:].astype(np.float32))
    assert np.array_equal(golden.products(cfg, *ops(32, 64), agreed).values(), whole[:, 32:])
    # A slice of all-zero blocks has no finest exponent and takes nothing from the rest.
    zeros = golden.slice_stats(cfg, golden.weight_operand(cfg, np.zeros((8, 64), np.int64)), we[:8], xm, xe)
    assert np.isinf(zeros[:, 0]).all() and np.array_equal(golden.acc_exp_of_slices(cfg, stats + [zeros]), agreed)


def test_a_saturating_slice_keeps_the_whole_products_split_and_sum_order():
    """At an exponent finer than the rule's the adds saturate, and their order is the
    K-split's: a slice with the whole's split gives the whole's rows, bit for bit."""
    cfg, rng = MVU_DEFAULT, np.random.default_rng(5)
    m, kp = 96, 512
    wm, we = rng.integers(-127, 128, (m, kp)), rng.integers(-2, 3, (m, kp // cfg.block))
    xm, xe = rng.integers(-127, 128, (2, kp)), rng.integers(-2, 3, (2, kp // cfg.block))
    acc_exp = golden.choose_acc_exp(cfg, wm, we, xm, xe) - 24  # far finer than safe
    split = best_shape(cfg, m, kp).split
    whole = golden.products(cfg, golden.weight_operand(cfg, wm), we, xm, xe, acc_exp, split)
    assert whole.saturated.any()
    kept = best_shape(cfg, 32, kp, m)
    assert kept.split == split and kept.m == 32
    part = golden.products(cfg, golden.weight_operand(cfg, wm[32:64]), we[32:64], xm, xe, acc_exp, kept.split)
    assert np.array_equal(part.acc, whole.acc[:, 32:64]) and part.saturated.any()


def test_slices_fall_on_whole_granules_and_the_link_carries_the_products_encoding(rng):
    assert ranges(2816, 8) == [(352 * j, 352 * (j + 1)) for j in range(8)]
    assert ranges(48, 4) == [(0, 32), (32, 48)]  # no more slices than granules
    assert all(a % GRANULE == 0 for a, _ in ranges(1000, 7))
    split = fpga(_rnn("GRU", rng, linear_before_reset=1), devices="4", split="rows", weight_mem="1MiB")
    cfg, body, a = split.cfg, split.program.body, split.assignment
    wire = wire_bytes(cfg, body, a.placement)
    # Each h part (32 units) goes to the other three devices as the product encodes it;
    # the copy on device 0 also feeds Y, so the parts it receives go as fp32.
    gathers = [i for i in body if isinstance(i, isa.Concat) and i.dst.startswith("gather")]
    part = gathers[0].srcs[1]
    narrow = math.ceil((32 * cfg.mant_bits + 32 // cfg.block * cfg.exp_bits) / 8)
    assert {d: wire.get((part, d)) for d in (0, 2, 3)} == {0: None, 2: narrow, 3: narrow}


def test_the_partitioner_serves_the_faster_form_and_says_which(rng, caplog):
    model = _rnn("GRU", rng, linear_before_reset=1)
    forms = {form: fpga(model, devices="4", split=form, weight_mem="1MiB") for form in ("whole", "rows")}
    with caplog.at_level("INFO", logger="bwserve.fpga"):
        auto = fpga(model, devices="4", weight_mem="1MiB")
    faster = min(forms, key=lambda f: forms[f].cost.cycles)
    assert auto.assignment.form == faster and auto.cost.cycles == forms[faster].cost.cycles
    assert ("row split:" if faster == "rows" else "whole matrices:") in caplog.text


def test_a_matrix_larger_than_a_device_is_split_by_rows_over_auto():
    model = _mlp((64, 512, 10))
    big = fpga(model, engine="mvu", weight_mem="1MiB")
    cfg = big.cfg
    largest = max(p.tiles.words for p in big.program.prologue if isinstance(p, isa.PinWeights))
    mem = str(math.ceil(largest * 0.6 * cfg.dpes * cfg.lanes * cfg.weight_bits / 8) * cfg.tiles)
    with pytest.raises(ModelLoadFailed, match="devices=auto"):
        fpga(model, engine="mvu", weight_mem=mem)
    with pytest.raises(ModelLoadFailed, match="neither with its matrices whole .* nor with its large products' rows"):
        fpga(model, devices="2", split="whole", weight_mem=mem)
    split = fpga(model, devices="auto", weight_mem=mem)
    assert split.assignment.form == "rows" and split.cost.devices >= 2
    x = {"input": np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)}
    assert np.array_equal(split.run(x)["logits"], big.run(x)["logits"])


@pytest.mark.parametrize("options,why", [
    ({"split": "columns"}, "split='columns': expected one of auto, whole, rows"),
])
def test_bad_split_option_is_a_load_error(options, why):
    with pytest.raises(ModelLoadFailed, match=why):
        fpga(_mlp((64, 10)), devices="2", **options)


def test_a_model_split_by_rows_serves_over_grpc_with_each_devices_time_on_metrics(tmp_path):
    """An MLP whose 64x512 layer is larger than a device: refused on one, deployed over
    devices=auto as a row split, served over gRPC with a big device's outputs bit for
    bit and onnxruntime's within 1e-4; /metrics has each device's modeled time and the
    link's for every request."""
    import onnx
    import tritonclient.grpc as grpcclient

    from serve.deploy import prepare
    from serve.repository import ModelRepository
    from serve.server import ServerConfig, ServerThread
    from tests.metrics.conftest import scrape

    model = _mlp((64, 512, 10))
    big = fpga(model, engine="mvu", weight_mem="1MiB")
    cfg = big.cfg
    largest = max(p.tiles.words for p in big.program.prologue if isinstance(p, isa.PinWeights))
    mem = str(math.ceil(largest * 0.6 * cfg.dpes * cfg.lanes * cfg.weight_bits / 8) * cfg.tiles)
    path = tmp_path / "mlp.onnx"
    onnx.save(model, path)
    prepared = prepare([path], name="wide", backend="fpga", backend_options={"devices": "auto", "weight_mem": mem})
    # What the server loads: the deployed model and config.
    served_here = fpga(onnx.load_from_string(prepared.model_bytes), prepared.config.layer_formats,
                       **prepared.config.backend_options)
    repo = ModelRepository(tmp_path / "repo")
    repo.add(prepared.config, prepared.model_bytes)
    rng, requests = np.random.default_rng(2), 3
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=0)) as handle:
        with grpcclient.InferenceServerClient(handle.address) as client:
            for _ in range(requests):
                x = rng.standard_normal((1, 64)).astype(np.float32)
                inp = grpcclient.InferInput("input", [1, 64], "FP32")
                inp.set_data_from_numpy(x)
                served = client.infer("wide", [inp]).as_numpy("logits")
                assert np.array_equal(served, big.run({"input": x})["logits"])
                np.testing.assert_allclose(served, ort_run(model, {"input": x})[0], atol=1e-4)
        samples = scrape(handle.server.metrics_port)
    served_here.run({"input": x})
    stats = served_here.last_device_stats()
    k = served_here.cost.devices
    assert served_here.assignment.form == "rows" and len(stats.per_device_seconds) == k >= 2
    labels = {"model": "wide", "version": "1", "device": "fpga"}
    for i, seconds in enumerate(stats.per_device_seconds):
        key = tuple(sorted({**labels, "device_index": str(i)}.items()))
        assert samples["bwserve_fpga_device_seconds_count"][key] == requests
        assert samples["bwserve_fpga_device_seconds_sum"][key] == pytest.approx(requests * seconds)
    link = samples["bwserve_fpga_link_seconds_sum"][tuple(sorted(labels.items()))]
    assert stats.link_seconds > 0 and link == pytest.approx(requests * stats.link_seconds)
