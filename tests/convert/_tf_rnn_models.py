"""Small recurrent TensorFlow digit classifiers, saved the ways users bring them.

scikit-learn's 8x8 digits, one image row per time step. Keras models are trained for a
few epochs (so that classes have margins); the TF1 ``rnn_cell`` graphs keep seeded random
weights. Each case is a file to convert, the ``--input-shape`` it needs, the input to
feed and TensorFlow's own logits for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

STEPS, FEATURES, HIDDEN, CLASSES = 8, 8, 16, 10
TEST_DIGITS = 16

# Keras layers between the input and the Dense classifier (``L`` is keras.layers).
LAYERS = {
    "lstm": lambda L: [L.LSTM(HIDDEN)],
    "gru": lambda L: [L.GRU(HIDDEN)],  # reset_after=True, Keras' default
    "gru_reset_before": lambda L: [L.GRU(HIDDEN, reset_after=False)],
    "simple_rnn": lambda L: [L.SimpleRNN(HIDDEN)],
    "bilstm": lambda L: [L.Bidirectional(L.LSTM(HIDDEN))],
    "stacked": lambda L: [L.LSTM(HIDDEN, return_sequences=True), L.GRU(HIDDEN)],
    "sequences": lambda L: [L.GRU(HIDDEN, return_sequences=True), L.Flatten()],
    "masked": lambda L: [L.Masking(0.0), L.LSTM(HIDDEN)],
}
# keras: a .keras file; saved_model: model.export(); frozen: a GraphDef whose placeholder
# X is [?, 8, 8]; frozen_unranked: X of unknown rank, reshaped inside, fed 1x64.
FORMATS = ("keras", "saved_model", "frozen", "frozen_unranked")
UNRANKED_SHAPE = {"X": [1, STEPS * FEATURES]}
# TF1 cells unrolled by dynamic_rnn (tf_keras), and a Keras 2 GRU, whose SavedModel
# tf2onnx rewrites into an ONNX GRU node.
LEGACY = ("tf1_gru_cell", "tf1_lstm_cell", "keras2_gru")


@dataclass(frozen=True)
class Case:
    path: Path
    input_shapes: dict | None  # what --input-shape gives
    x: np.ndarray              # TEST_DIGITS inputs, each fed alone (batch 1)
    want: np.ndarray           # TensorFlow's logits, (TEST_DIGITS, CLASSES)


def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16).astype(np.float32), data.target


def inputs_for(kind: str) -> np.ndarray:
    x = digits()[0][-TEST_DIGITS:].copy()
    if kind == "masked":
        x[:, -2:] = 0  # padded, shorter sequences: the last two steps are masked
    return x


def keras_cases(tf, kind: str, folder: Path) -> dict[str, Case]:
    """A trained Keras ``kind`` model in every one of ``FORMATS``."""
    L = tf.keras.layers
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((STEPS, FEATURES), name="digits")
    h = inputs
    for layer in LAYERS[kind](L):
        h = layer(h)
    model = tf.keras.Model(inputs, L.Dense(CLASSES)(h))
    model.compile(tf.keras.optimizers.Adam(0.02), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x_train, y_train = digits()
    model.fit(x_train[:-TEST_DIGITS], y_train[:-TEST_DIGITS], epochs=3, batch_size=100, verbose=0)
    x = inputs_for(kind)
    want = model.predict(x, verbose=0)
    model.save(folder / f"{kind}.keras")
    model.export(str(folder / f"{kind}_saved"), verbose=False)
    frozen = _freeze(tf, model, [None, STEPS, FEATURES], folder / f"{kind}_frozen.pb")
    unranked = _freeze(tf, model, None, folder / f"{kind}_unranked.pb")
    return {
        "keras": Case(folder / f"{kind}.keras", None, x, want),
        "saved_model": Case(folder / f"{kind}_saved", None, x, want),
        "frozen": Case(frozen, None, x, want),
        "frozen_unranked": Case(unranked, UNRANKED_SHAPE, x.reshape(TEST_DIGITS, -1), want),
    }


def _freeze(tf, model, shape, path: Path) -> Path:
    """A frozen GraphDef of ``model`` with placeholder ``X`` of ``shape`` (None: unknown rank)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    fn = tf.function(lambda X: model(tf.reshape(X, [-1, STEPS, FEATURES])),
                     input_signature=[tf.TensorSpec(shape, tf.float32, name="X")])
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function(), lower_control_flow=False)
    path.write_bytes(frozen.graph.as_graph_def().SerializeToString())
    return path


def legacy_case(tf, tf_keras, kind: str, folder: Path) -> Case:
    x = inputs_for(kind)
    if kind == "keras2_gru":
        tf_keras.utils.set_random_seed(0)
        inputs = tf_keras.Input((STEPS, FEATURES), name="digits")
        model = tf_keras.Model(inputs, tf_keras.layers.Dense(CLASSES)(tf_keras.layers.GRU(HIDDEN)(inputs)))
        model.compile(tf_keras.optimizers.Adam(0.02),
                      tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        x_train, y_train = digits()
        model.fit(x_train[:-TEST_DIGITS], y_train[:-TEST_DIGITS], epochs=3, batch_size=100, verbose=0)
        model.save(str(folder / kind), save_format="tf")
        return Case(folder / kind, None, x, model.predict(x, verbose=0))
    path = folder / f"{kind}.pb"
    want = _tf1_graph(tf, tf_keras, kind, x.reshape(TEST_DIGITS, -1), path)
    return Case(path, UNRANKED_SHAPE, x.reshape(TEST_DIGITS, -1), want)


def _tf1_graph(tf, tf_keras, kind: str, x: np.ndarray, path: Path) -> np.ndarray:
    """TF1 style: placeholder ``X`` of unknown rank, a ``tf.compat.v1.nn.rnn_cell`` cell
    unrolled by ``dynamic_rnn`` in TF1 control flow, logits from the final state, frozen
    by ``convert_variables_to_constants``. Returns TensorFlow's logits for ``x``."""
    from tf_keras.api._v1.keras.__internal__.legacy import rnn_cell  # tf.compat.v1.nn.rnn_cell

    v1 = tf.compat.v1
    rng = np.random.default_rng(0)
    v1.disable_control_flow_v2()  # Enter/Exit/Merge/Switch, as TF1 wrote them
    try:
        graph = tf.Graph()
        with graph.as_default():
            X = v1.placeholder(tf.float32, None, name="X")
            cell = rnn_cell.GRUCell(HIDDEN) if kind == "tf1_gru_cell" else rnn_cell.LSTMCell(HIDDEN)
            _, state = v1.nn.dynamic_rnn(cell, tf.reshape(X, [-1, STEPS, FEATURES]), dtype=tf.float32)
            h = state.h if kind == "tf1_lstm_cell" else state
            w, b = v1.get_variable("w", [HIDDEN, CLASSES]), v1.get_variable("b", [CLASSES])
            tf.identity(tf.matmul(h, w) + b, name="logits")
            with v1.Session(graph=graph) as session:
                for var in v1.global_variables():
                    var.load(rng.uniform(-0.6, 0.6, var.shape).astype(np.float32), session)
                want = np.concatenate([session.run("logits:0", {"X:0": row[None]}) for row in x])
                frozen = v1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), ["logits"])
    finally:
        v1.enable_control_flow_v2()
    path.write_bytes(frozen.SerializeToString())
    return want
