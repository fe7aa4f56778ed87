"""LSTM and GRU (ONNX's own ops, weights pinned as initializers) against onnxruntime,
hand-made and as tf2onnx emits them for Keras layers (issue 24), on both matrix engines.

Sizes are DeepBench's inference shapes scaled down (hidden 512-2816, 25+ steps, batch
1 there; hidden 64 and 25 steps here). Tolerances: at the widest setting each product
is within ~1e-4 of its scale (16-bit mantissas); in msfp16 an operand keeps 8 bits
(half a unit is 2**-7 of its block's maximum), so a gate's pre-activation can be off
by ~1% of its scale; gates are bounded by sigmoid/tanh and the state is a convex mix,
so the error stays at that level over the steps rather than growing.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from backends.fpga import isa
from tests.fpga.conftest import fpga, make_model, ort_run

SEQ, BATCH, INPUT, HIDDEN = 25, 1, 48, 64


def rnn_model(op: str, direction: str, rng, peepholes: bool = False, hidden: int = HIDDEN, inp: int = INPUT,
              seq: int = SEQ, batch: int = BATCH, **attrs):
    gates = {"LSTM": 4, "GRU": 3}[op]
    dirs = 2 if direction == "bidirectional" else 1
    s = 1 / np.sqrt(hidden)
    inits = {"W": rng.uniform(-s, s, (dirs, gates * hidden, inp)), "R": rng.uniform(-s, s, (dirs, gates * hidden, hidden)),
             "B": rng.uniform(-s, s, (dirs, 2 * gates * hidden)), "h0": rng.uniform(-0.5, 0.5, (dirs, batch, hidden))}
    names = ["x", "W", "R", "B", "", "h0"]
    if op == "LSTM":
        inits["c0"] = rng.uniform(-0.5, 0.5, (dirs, batch, hidden))
        names.append("c0")
        if peepholes:
            inits["P"] = rng.uniform(-s, s, (dirs, 3 * hidden))
            names.append("P")
    inits = {k: v.astype(np.float32) for k, v in inits.items()}
    outs = ["y", "y_h"] + (["y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outs, hidden_size=hidden, direction=direction, **attrs)
    return make_model([node], {"x": [seq, batch, inp]}, {o: None for o in outs}, inits)


CASES = [("LSTM", "forward", {}), ("LSTM", "bidirectional", {"peepholes": True}),
         ("GRU", "forward", {"linear_before_reset": 1}), ("GRU", "reverse", {})]


@pytest.mark.parametrize("op,direction,extra", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-4), ("msfp16", 2e-2)])
@pytest.mark.parametrize("engine", ["systolic", "mvu"])
def test_rnn_agrees_with_onnxruntime(op, direction, extra, precision, tol, engine, rng):
    extra = dict(extra)  # the parameter is shared between runs
    peep = extra.pop("peepholes", False)
    model = rnn_model(op, direction, rng, peepholes=peep, **extra)
    x = rng.standard_normal((SEQ, BATCH, INPUT)).astype(np.float32)
    formats = {} if precision == "fp32" else {"W": precision, "R": precision}
    backend = fpga(model, formats, strict=1, engine=engine)
    assert backend.engine_name == engine and backend.cfg.mant_bits == (16 if precision == "fp32" else 8)
    got, want = backend.run({"x": x}), ort_run(model, {"x": x})
    for (name, value), ref in zip(got.items(), want):
        assert value.shape == ref.shape, name
        err = float(np.abs(value - ref).max())
        print(f"{op} {direction} {precision} {name}: max |err| {err:.2e}")
        assert err <= tol
    if precision != "fp32":  # the narrow format really was used: results differ from fp32's
        assert not np.allclose(got["y"], want[0], atol=1e-5)
    mm = [i for i in backend.program.body if isinstance(i, isa.MatMul)]
    dirs = 2 if direction == "bidirectional" else 1
    # One input projection over all steps per direction, then the recurrent products.
    assert sum(i.t == SEQ * BATCH for i in mm) == dirs
    assert all(i.slot for i in mm)  # weights pinned, not streamed per request


# -- what tf2onnx emits for Keras recurrent layers ------------------------------------------

KERAS = {"lstm": lambda L: L.LSTM(HIDDEN), "bilstm": lambda L: L.Bidirectional(L.LSTM(HIDDEN))}


@pytest.fixture(scope="module")
def keras_onnx(tmp_path_factory):
    """Untrained Keras LSTM and Bidirectional(LSTM) classifiers, converted by tf2onnx
    (models.convert): what a user's Keras file becomes, attributes and all."""
    pytest.importorskip("tf2onnx", reason="the [tf] extra (tf2onnx, tensorflow-cpu) is not installed")
    tf = pytest.importorskip("tensorflow", reason="the [tf] extra (tf2onnx, tensorflow-cpu) is not installed")
    from models.convert import convert

    folder = tmp_path_factory.mktemp("keras_rnn")
    out = {}
    for name, layer in KERAS.items():
        tf.keras.utils.set_random_seed(0)
        inputs = tf.keras.Input((SEQ, INPUT), name="x")
        model = tf.keras.Model(inputs, tf.keras.layers.Dense(10)(layer(tf.keras.layers)(inputs)))
        model.save(folder / f"{name}.keras")
        out[name] = convert([folder / f"{name}.keras"], input_shapes={"x": [1, SEQ, INPUT]}).model
    return out


@pytest.mark.parametrize("name", list(KERAS))
@pytest.mark.parametrize("engine", ["systolic", "mvu"])
def test_tf2onnx_recurrent_nodes_lower_to_the_device_and_agree_with_onnxruntime(keras_onnx, name, engine, rng):
    model = keras_onnx[name]
    assert "LSTM" in {n.op_type for n in model.graph.node}
    backend = fpga(model, engine=engine)
    assert not any(n.op_type == "LSTM" for part in backend.program.host_parts for n in part.graph.node)
    feed = model.graph.input[0].name
    x = rng.standard_normal((1, SEQ, INPUT)).astype(np.float32)
    got = next(iter(backend.run({feed: x}).values()))
    (want,) = ort_run(model, {feed: x})[:1]
    assert float(np.abs(got - want).max()) <= 1e-4 * max(1.0, float(np.abs(want).max()))
