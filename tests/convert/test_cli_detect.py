"""`serve convert` end to end, and framework detection from files."""
from __future__ import annotations

import shutil

import numpy as np
import onnx
import pytest

from models.convert import TARGET_IR_VERSION, TARGET_OPSET, ConversionError, detect_framework
from models.convert.shapes import parse_input_shape
from serve.cli import main

from ._util import run_onnx, shared_model


def test_serve_convert_writes_a_checked_model_and_prints_the_summary(tmp_path, capsys):
    out = tmp_path / "lenet.onnx"
    assert main(["convert", str(shared_model("caffe_lenet")), "-o", str(out)]) == 0
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == TARGET_IR_VERSION
    assert model.opset_import[0].version == TARGET_OPSET
    (y,) = run_onnx(model, {"data": np.zeros((1, 1, 28, 28), np.float32)})
    assert y.shape == (1, 10) and abs(float(y.sum()) - 1) < 1e-5  # softmax probabilities
    text = capsys.readouterr().out
    for expected in ("opset / IR", "21 / 10", "431,080", "data: float32[1x1x28x28]", "prob: float32[1x10]",
                     "runs on host under fpga", "Softmax"):
        assert expected in text, expected


def test_serve_convert_failure_is_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"nonsense")
    assert main(["convert", str(bad), "-o", str(tmp_path / "out.onnx")]) == 1
    err = capsys.readouterr().err
    assert "convert failed" in err and "model.onnx" in err
    assert not (tmp_path / "out.onnx").exists()


def test_serve_convert_from_flag_overrides_detection(tmp_path):
    # A CNTK export that lost its extension: --from onnx says what it is.
    src = tmp_path / "cntk_export"
    shutil.copy(shared_model("cntk_mnist", "model.onnx"), src)
    assert main(["convert", str(src), "--from", "cntk", "-o", str(tmp_path / "m.onnx")]) == 0


def test_parse_input_shape():
    assert parse_input_shape("image=1,3,224,224") == ("image", [1, 3, 224, 224])
    assert parse_input_shape("mask=N,4") == ("mask", ["N", 4])
    for bad in ("1,3,224", "=1,2", "x=", "x=1,,2", "x=0,3", "x=-1,3"):
        with pytest.raises(Exception, match="expected NAME=D0"):
            parse_input_shape(bad)


def test_detect_framework(tmp_path):
    assert detect_framework(shared_model("cntk_mnist", "model.onnx")) == "onnx"
    assert detect_framework(shared_model("caffe_lenet")) == "caffe"
    assert detect_framework(shared_model("caffe_lenet", "lenet.prototxt")) == "caffe"
    assert detect_framework(shared_model("tf_mnist_mlp", "frozen.pb")) == "tf"
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "saved_model.pb").write_bytes(b"")
    assert detect_framework(tmp_path / "saved") == "tf"
    for name, kind in (("m.keras", "tf"), ("m.h5", "tf"), ("m.pt", "torch"), ("m.pth", "torch"), ("m.model", "cntk")):
        (tmp_path / name).write_bytes(b"x")
        assert detect_framework(tmp_path / name) == kind
    # An ONNX model saved as .pb is told apart from a GraphDef by parsing it.
    shutil.copy(shared_model("cntk_mnist", "model.onnx"), tmp_path / "model.pb")
    assert detect_framework(tmp_path / "model.pb") == "onnx"


def test_detect_framework_errors(tmp_path):
    with pytest.raises(ConversionError, match="no such file"):
        detect_framework(tmp_path / "missing.onnx")
    (tmp_path / "notes").write_text("hello")
    with pytest.raises(ConversionError, match="cannot tell the framework"):
        detect_framework(tmp_path / "notes")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConversionError, match="not a SavedModel"):
        detect_framework(tmp_path / "empty")


def test_native_cntk_model_explains_the_onnx_export(tmp_path):
    from models.convert import convert

    (tmp_path / "net.model").write_bytes(b"\x00cntk")
    with pytest.raises(ConversionError, match=r"ModelFormat.ONNX"):
        convert(tmp_path / "net.model")
