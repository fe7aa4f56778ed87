"""The built-in default model: a digits classifier trained here on scikit-learn's digits.

Input ``pixels``: FP32 [1, 64], an 8x8 digit with values 0..16 as ``load_digits``
gives them. Output ``probabilities``: FP32 [1, 10].
"""
from __future__ import annotations

from dataclasses import dataclass

import onnx

from models.examples.graph import dense_stack

NAME = "digits"
SEED = 0


@dataclass(frozen=True)
class TrainedDigits:
    model: onnx.ModelProto
    test_accuracy: float  # on the held-back quarter of the digits
    test_count: int


def train() -> TrainedDigits:
    """Train a 64-64-10 MLP on 75% of the digits, export it, score it on the rest."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=SEED, stratify=digits.target)
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=500, random_state=SEED)
    clf.fit(x_train / 16.0, y_train)
    # Fold the 1/16 input scaling into the first layer so the model takes raw 0..16 pixels.
    weights = [clf.coefs_[0] / 16.0, *clf.coefs_[1:]]
    model = dense_stack(NAME, weights, clf.intercepts_, "pixels", "probabilities", softmax=True)
    accuracy = float(clf.score(x_test / 16.0, y_test))
    return TrainedDigits(model, accuracy, len(y_test))
