"""MLP 784-512-512-10 with seeded random weights: the benchmarks' larger model."""
from __future__ import annotations

import numpy as np
import onnx

from models.examples.graph import dense_stack


def build(sizes: tuple[int, ...] = (784, 512, 512, 10), seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal((a, b)).astype(np.float32) / np.sqrt(a) for a, b in zip(sizes, sizes[1:])]
    biases = [np.zeros(b, np.float32) for b in sizes[1:]]
    return dense_stack("mlp_" + "_".join(map(str, sizes)), weights, biases, "input", "logits")
