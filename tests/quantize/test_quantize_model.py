"""The quantiser end to end on a real model and real digits: CNTK's MNIST model on MNIST
(../shared), and the project's own digits model, trained here, on scikit-learn's digits."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models.convert import convert
from models.quantize import Calibration, load_calibration, quantize_model
from models.quantize.export import METADATA_FORMATS
from models.quantize.onnx_io import find_weights, prepare, run, session
from tests.old_exporter import mnist_folder, reference_sets

MODELS = Path(__file__).resolve().parents[2] / ".." / "shared" / "models"
CNTK = MODELS / "cntk_mnist"


@dataclass(frozen=True)
class Source:
    model: onnx.ModelProto  # converted, as `serve deploy` hands it to the quantiser
    digits: Calibration  # labelled calibration data
    references: list[tuple[dict[str, np.ndarray], np.ndarray]]  # (feeds, fp32 outputs)


@pytest.fixture(scope="module", params=["cntk", "made-here"])
def source(request) -> Source:
    """CNTK's MNIST on MNIST digits (../shared, where it is beside the checkout), or the
    project's own digits model, trained here, on scikit-learn's digits."""
    if request.param == "cntk":
        if not CNTK.exists():
            pytest.skip(f"{CNTK} is not beside the checkout (CI has it); 'made-here' runs the same test")
        refs = [({"Input3": x}, y) for x, y in reference_sets(CNTK)]
        return Source(convert(CNTK / "model.onnx").model, load_calibration("mnist", count=300), refs)
    from models.examples import digits

    model = digits.train().model
    data = load_calibration("digits", count=300)
    fp32 = session(prepare(model))
    refs = [({"pixels": data.x[i:i + 1]}, fp32.run(None, {"pixels": data.x[i:i + 1]})[0]) for i in (0, 1, 2)]
    return Source(model, data, refs)


def accuracy(model: onnx.ModelProto, data: Calibration, exact: bool = True) -> float:
    out = run(session(model, exact=exact), data.x)
    return 100.0 * float(np.mean(out.argmax(axis=1) == data.y))


@pytest.mark.parametrize("kind", ["cntk", "made-here"])
def test_prepare_keeps_the_models_outputs(kind, tmp_path_factory) -> None:
    folder = mnist_folder(kind, tmp_path_factory)
    raw = onnx.load(str(folder / "model.onnx"))  # opset 8, IR 3, reshaped MatMul weight
    prepared = prepare(raw)
    assert prepared.ir_version == 10 and prepared.opset_import[0].version >= 21
    assert len(find_weights(prepared)) == 3  # two convs and the reshaped dense weight
    for x, y in reference_sets(folder):
        np.testing.assert_allclose(session(prepared).run(None, {"Input3": x})[0], y, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("precision", ["msfp16", "mxint8", "mxfp8_e4m3", "fp16"])
def test_wide_formats_keep_the_reference_answers(source: Source, precision: str) -> None:
    result = quantize_model(source.model, precision)
    sess = ort.InferenceSession(result.model.SerializeToString())  # as a backend would
    for feeds, y in source.references:
        got = sess.run(None, feeds)[0]
        assert got.argmax() == y.argmax()
        assert np.linalg.norm(got - y) / np.linalg.norm(y) < 0.05
    assert set(result.layer_formats.values()) == {precision}


def test_auto_stays_within_budget_and_goes_narrow(source: Source) -> None:
    model, digits = source.model, source.digits
    result = quantize_model(model, "auto", calibration=digits, budget=0.5)
    report = result.report
    names = {r.name for r in find_weights(prepare(model))}
    assert set(result.layer_formats) == names
    assert report.fp32_accuracy - report.accuracy <= 0.5
    assert report.average_bits < 8  # something narrower than 8 bits was within budget
    # The report's accuracy is what the written model scores, measured independently.
    assert accuracy(result.model, digits) == pytest.approx(report.accuracy)
    stored = json.loads({p.key: p.value for p in result.model.metadata_props}[METADATA_FORMATS])
    assert stored == result.layer_formats
    assert report.size_bytes < report.size_fp32_bytes / 4


def test_auto_with_zero_budget_loses_nothing(source: Source) -> None:
    model, digits = source.model, source.digits
    result = quantize_model(model, "auto", calibration=digits, budget=0.0)
    assert result.report.accuracy >= result.report.fp32_accuracy


def test_unlabelled_budget_is_relative_output_error(source: Source) -> None:
    model, digits = source.model, source.digits
    unlabelled = Calibration(digits.x[:100], None, "x only")
    result = quantize_model(model, "auto", calibration=unlabelled, budget=2.0)
    assert result.report.accuracy is None
    assert result.report.output_error <= 2.0
    prepared = prepare(model)
    ref = run(session(prepared), unlabelled.x)
    got = run(session(result.model), unlabelled.x)
    assert 100 * np.linalg.norm(got - ref) / np.linalg.norm(ref) == pytest.approx(result.report.output_error)
    loose = quantize_model(model, "auto", calibration=unlabelled, budget=1000.0)
    assert set(loose.layer_formats.values()) == {"msfp8"}  # the narrowest candidate


def test_int8_uses_onnxruntime_qdq(source: Source) -> None:
    model, digits = source.model, source.digits
    result = quantize_model(model, "int8", calibration=digits)
    ops = {n.op_type for n in result.model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # activations are quantised too
    assert result.model.ir_version == 10
    assert abs(accuracy(result.model, digits, exact=False) - result.report.fp32_accuracy) <= 1.0


def test_auto_without_calibration_is_an_error(source: Source) -> None:
    model = source.model
    with pytest.raises(ValueError, match="calibration"):
        quantize_model(model, "auto")
