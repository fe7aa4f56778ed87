"""One model pinned over several simulated FPGAs (fpga option ``devices``, issue 18).

Whole matrices go to devices in program order (``backends.fpga.partition``): the
outputs are bit for bit one large enough device's, the chosen assignment is the one
the cycle model rates fastest, and transfers between devices cost cycles on the link.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from backends.base import ModelLoadFailed
from backends.fpga import isa
from backends.fpga.cycles import program_cost
from backends.fpga.partition import assignments, fewest_devices, place
from hw.config import DEVICE_LINK, LinkConfig
from tests.fpga.conftest import fpga
from tests.fpga.test_rnn import rnn_model


def _mlp(sizes=(64, 48, 40, 32, 10)):
    from models.examples import mlp

    return mlp.build(sizes)


def _words(backend) -> tuple[int, ...]:
    return tuple(p.tiles.words for p in backend.program.prologue if isinstance(p, isa.PinWeights))


def _memory(backend, words: int) -> str:
    """The weight_mem option of a device that holds ``words`` words per tile engine."""
    cfg = backend.cfg
    return str(math.ceil(words * cfg.dpes * cfg.lanes * cfg.weight_bits / 8) * cfg.tiles)


def _one_big(model, mvu="tiny"):
    return fpga(model, engine="mvu", mvu=mvu, weight_mem="1MiB")


MODELS = {"mlp": (lambda rng: _mlp(), "tiny", "input", (1, 64)),
          "gru": (lambda rng: rnn_model("GRU", "forward", rng, linear_before_reset=1), "small", "x", (25, 1, 48)),
          "gru-3-matrices": (lambda rng: rnn_model("GRU", "reverse", rng), "small", "x", (25, 1, 48))}


@pytest.mark.parametrize("name", MODELS)
def test_outputs_over_devices_equal_one_big_device_bit_for_bit(name, rng):
    make, mvu, input_name, shape = MODELS[name]
    model = make(rng)
    big = _one_big(model, mvu)
    words = _words(big)
    mem = _memory(big, max(words))  # each device holds the largest matrix, not two
    split = fpga(model, mvu=mvu, devices="auto", weight_mem=mem)
    assert len(set(split.assignment.homes)) == split.cost.devices >= 2
    for _ in range(3):
        x = {input_name: rng.standard_normal(shape).astype(np.float32)}
        want, got = big.run(x), split.run(x)
        assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) for k in want)


def test_the_chosen_assignment_fits_and_is_the_fastest_of_every_one_that_fits():
    model = _mlp()
    big = _one_big(model)
    words = _words(big)
    mem = _memory(big, words[0] + words[-1])
    backend = fpga(model, mvu="tiny", devices="3", weight_mem=mem)
    cfg, body, k = backend.cfg, backend.program.body, 3
    assert all(w <= cfg.mem_words for w in backend.assignment.words)
    # Every map of the matrices to devices 0.. in order, consecutive runs, each within memory.
    brute = {h for h in itertools.product(range(k), repeat=len(words))
             if h[0] == 0 and all(b - a in (0, 1) for a, b in zip(h, h[1:]))
             and all(sum(w for w, d in zip(words, h) if d == dev) <= cfg.mem_words for dev in range(k))}
    assert set(assignments(words, cfg.mem_words, k)) == brute and len(brute) > 1
    slots = backend.assignment.slots
    cycles = {h: program_cost(cfg, body, place(body, dict(zip(slots, h))), k).cycles for h in brute}
    assert cycles[backend.assignment.homes] == min(cycles.values()) == backend.cost.cycles


def test_auto_pins_over_the_fewest_devices_that_hold_the_model():
    model = _mlp()
    big = _one_big(model)
    words = _words(big)
    mem = _memory(big, max(words))
    backend = fpga(model, mvu="tiny", devices="auto", weight_mem=mem)
    fewest = fewest_devices(words, backend.cfg.mem_words)
    assert backend.cost.devices == fewest == 3  # 192 words, then 120 + 80, then 20 words
    with pytest.raises(ModelLoadFailed, match=rf"need \d+ bytes .* but {fewest - 1} devices of \d+ bytes .*neither "
                                              rf"with its matrices whole .* nor with its large products' rows split"
                                              rf".*devices=auto pins it over the fewest that do"):
        fpga(model, mvu="tiny", devices=str(fewest - 1), weight_mem=mem)
    assert fpga(model, mvu="tiny", devices="auto", weight_mem="1MiB").cost.devices == 1  # one holds it


def test_weights_too_large_are_refused_with_both_sizes_naming_devices_auto():
    model = _mlp()
    big = _one_big(model)
    small = _memory(big, max(_words(big)) - 1)
    with pytest.raises(ModelLoadFailed, match=r"need \d+ bytes .* unit has \d+ bytes .*devices=auto"):
        fpga(model, engine="mvu", mvu="tiny", weight_mem=small)
    for devices in ("auto", "8"):
        with pytest.raises(ModelLoadFailed, match=r"need \d+ bytes .*devices of \d+ bytes .*neither with its "
                                                  r"matrices whole nor with its large products' rows split"
                                                  if devices == "auto" else r"8 devices of \d+ bytes .*neither"):
            fpga(model, mvu="tiny", devices=devices, weight_mem=small)


@pytest.mark.parametrize("options,why", [
    ({"devices": "0"}, "devices='0': expected a number of devices"),
    ({"devices": "two"}, "expected a number of devices .* or auto"),
    ({"devices": "-1"}, "expected a number"),
    ({"devices": "2", "engine": "systolic"}, "only the matrix-vector unit"),
    ({"devices": "auto", "array": "8x8"}, "only the matrix-vector unit"),
])
def test_bad_devices_options_are_load_errors(options, why):
    with pytest.raises(ModelLoadFailed, match=why):
        fpga(_mlp(), mvu="tiny", **options) if "array" not in options else fpga(_mlp(), **options)


def test_rtl_simulates_one_device_and_refuses_a_model_over_several():
    model = _mlp()
    big = _one_big(model)
    with pytest.raises(ModelLoadFailed, match="fpga_sim=rtl simulates one device"):
        fpga(model, mvu="tiny", devices="auto", weight_mem=_memory(big, max(_words(big))), fpga_sim="rtl")


def test_a_register_read_on_another_device_crosses_the_link():
    """MLP 64-48-10 with one matrix a device: the 48 hidden activations cross once."""
    model = _mlp((64, 48, 10))
    big = _one_big(model)
    mem = _memory(big, max(_words(big)))
    one = fpga(model, mvu="tiny", weight_mem=_memory(big, sum(_words(big))))
    two = fpga(model, mvu="tiny", devices="2", weight_mem=mem)
    cfg, cost = two.cfg, two.cost
    assert two.assignment.homes == (0, 1) and one.cost.link_cycles == 0
    # Read only by the next product: sent as that product encodes it (mantissas, block exponents).
    wire = math.ceil((48 * cfg.mant_bits + math.ceil(48 / cfg.block) * cfg.exp_bits) / 8)
    latency = math.ceil(DEVICE_LINK.latency_s * cfg.clock_hz)
    hop = math.ceil(wire / DEVICE_LINK.bytes_per_s * cfg.clock_hz) + latency
    # Its bytes stream out behind the product that makes them: only the hop's latency shows.
    assert cost.link_cycles >= hop > latency
    assert cost.cycles == one.cost.cycles + latency
    assert cost.macs == one.cost.macs and sum(cost.device_cycles) >= cost.compute_cycles
    # Utilisation is over the MACs of both devices; the request's stats report it.
    assert cost.utilisation(cfg) == pytest.approx(cost.macs / (2 * cfg.macs * cost.compute_cycles))
    two.run({"input": np.zeros((1, 64), np.float32)})
    assert two.last_device_stats().mac_utilisation == pytest.approx(cost.utilisation(cfg))
    slow = program_cost(cfg, two.program.body, two.assignment.placement, 2, LinkConfig(bytes_per_s=1e6))
    assert slow.link_cycles > 50 * hop


def test_link_config_is_checked():
    with pytest.raises(ValueError, match="bytes_per_s > 0"):
        LinkConfig(bytes_per_s=0)
    assert DEVICE_LINK.seconds(5000) == pytest.approx(1.44e-6 + 1e-6)


def test_a_model_too_large_for_one_device_is_served_over_grpc_on_the_fewest(tmp_path, rng):
    """The built-in digits model on devices that hold its larger matrix but not both:
    refused on one, deployed over devices=auto (two), served over gRPC with a big
    device's outputs, bit for bit."""
    import onnx
    import tritonclient.grpc as grpcclient

    from serve.deploy import prepare
    from serve.repository import ModelRepository
    from serve.server import ServerConfig, ServerThread
    from tests.fpga.conftest import ort_run

    prepared = prepare([], backend="fpga", backend_options={"engine": "mvu"}, trial_load=False)
    model = onnx.load_from_string(prepared.model_bytes)
    big = fpga(model, prepared.config.layer_formats, engine="mvu", weight_mem="1MiB")
    mem = _memory(big, max(_words(big)))
    with pytest.raises(ModelLoadFailed, match="devices=auto"):
        fpga(model, prepared.config.layer_formats, engine="mvu", weight_mem=mem)
    assert fpga(model, prepared.config.layer_formats, devices="auto", weight_mem=mem).cost.devices == 2
    prepared = prepare([], name="digits_split", backend="fpga", backend_options={"devices": "auto", "weight_mem": mem})
    repo = ModelRepository(tmp_path)
    repo.add(prepared.config, prepared.model_bytes)
    handle = ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=0))
    try:
        with grpcclient.InferenceServerClient(handle.address) as client:
            for _ in range(3):
                x = rng.uniform(0, 16, (1, 64)).astype(np.float32)
                inp = grpcclient.InferInput("pixels", [1, 64], "FP32")
                inp.set_data_from_numpy(x)
                served = client.infer("digits_split", [inp]).as_numpy("probabilities")
                assert np.array_equal(served, big.run({"pixels": x})["probabilities"])
                np.testing.assert_allclose(served, ort_run(model, {"pixels": x})[0], atol=1e-3)
    finally:
        handle.stop()
