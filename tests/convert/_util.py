"""Paths and helpers shared by the converter tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_MODELS = REPO.parent / "shared" / "models"


def shared_model(*parts: str) -> Path:
    path = SHARED_MODELS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared model {path} is not here (CI lays shared/ beside the clone)")
    return path


def run_onnx(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``model`` under onnxruntime CPU, the serving backend."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)
