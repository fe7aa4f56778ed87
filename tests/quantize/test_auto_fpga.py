"""``auto`` for the fpga: candidates scored with the device's activation quantisation.

The fpga backend quantises each Conv/MatMul/Gemm input to its weight's format
(``quantize_activations``); cpu and gpu keep float inputs. The quantiser's fpga scoring is
checked against the fpga backend itself, and a search scored that way must keep its
budget on the device, where a search scored on float activations can miss it.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from models.examples.graph import dense_stack
from models.quantize import ActivationRule, Calibration, Format, quantize_activations, quantize_model
from models.quantize.export import quantized_weight
from models.quantize.fpga_eval import fpga_outputs, layer_formats
from models.quantize.onnx_io import find_weights, initializer, prepare, run, session
from tests.fpga.conftest import fpga, make_model

BUDGET = 1.0  # accuracy points


def _conv(rng, x_shape, w_shape, **attrs) -> onnx.ModelProto:
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)
    return make_model([node], {"x": list(x_shape)}, {"y": None}, {"w": w, "b": b})


def _matrix_models(rng) -> dict[str, onnx.ModelProto]:
    w = rng.standard_normal((40, 12)).astype(np.float32)
    c = rng.standard_normal(12).astype(np.float32)
    return {
        "matmul": make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": [1, 40]}, {"y": [1, 12]},
                             {"w": w}),
        "gemm_transA": make_model([helper.make_node("Gemm", ["x", "w", "c"], ["y"], transA=1, alpha=0.5)],
                                  {"x": [40, 1]}, {"y": [1, 12]}, {"w": w, "c": c}),
        # K = 2 channels x 9 offsets per group: a short second block of msfp's 16
        "conv2d_grouped": _conv(rng, (1, 4, 9, 9), (6, 2, 3, 3), group=2, pads=[1, 0, 1, 2], strides=[2, 1]),
        "conv1d_dilated": _conv(rng, (1, 3, 20), (5, 3, 4), dilations=[2], pads=[2, 1]),
    }


@pytest.mark.parametrize("case", ["matmul", "gemm_transA", "conv2d_grouped", "conv1d_dilated"])
@pytest.mark.parametrize("precision", ["msfp8", "mxint8"])
def test_fpga_scoring_computes_what_the_fpga_backend_computes(case: str, precision: str) -> None:
    """Integer block formats are exact on the device's array, so the two agree up to
    float32 rounding; the float-activation run must not (the taps did something)."""
    rng = np.random.default_rng(7)
    model = _matrix_models(rng)[case]
    q = quantize_model(model, precision)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    spread = np.logspace(-3, 1, int(np.prod(shape))).reshape(shape)  # small values beside large ones
    x = (rng.standard_normal((6, *shape)) * spread).astype(np.float32)
    backend = fpga(q.model, q.layer_formats, **q.backend_options)
    device = np.concatenate([backend.run({"x": xi})["y"] for xi in x])
    shapes = {t.name: tuple(t.dims) for t in prepare(model).graph.initializer}
    ours = fpga_outputs(q.model, x, shapes)
    scale = float(np.abs(device).max())
    np.testing.assert_allclose(ours, device, rtol=1e-5, atol=1e-6 * scale)
    assert np.abs(run(session(q.model), x) - device).max() > 1e-3 * scale


@pytest.fixture(scope="module")
def outlier() -> tuple[onnx.ModelProto, Calibration]:
    """A 32-32-4 MLP whose first input is a large constant it ignores (a zero weight
    row). Harmless with float inputs; on the fpga that input sets its block's scale,
    and a narrow format flushes the block's other inputs."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 32**-0.5, (32, 32))
    w1[0] = 0
    w2 = rng.normal(0, 32**-0.5, (32, 4))
    model = dense_stack("outlier", [w1, w2], [np.zeros(32), np.zeros(4)], "x", "y")
    x = rng.normal(0, 1, (400, 32)).astype(np.float32)
    x[:, 0] = 64
    y = run(session(model), x).argmax(axis=1)  # labels: what fp32 answers
    return model, Calibration(x, y, "outlier")


@pytest.fixture(scope="module")
def searches(outlier) -> dict[ActivationRule, object]:
    model, data = outlier
    return {rule: quantize_model(model, "auto", calibration=data, budget=BUDGET, activations=rule)
            for rule in ActivationRule}


def numpy_fpga_accuracy(model: onnx.ModelProto, formats: dict[str, str], data: Calibration) -> float:
    """The MLP as the fpga computes it, written out: each layer's input through
    ``quantize_activations``, times the weight in its format."""
    prepared = prepare(model)
    refs = {r.name: r for r in find_weights(prepared)}
    h = data.x
    for i in range(2):
        name, fmt = f"fc{i}.weight", Format(formats[f"fc{i}.weight"])
        w = quantized_weight(initializer(prepared, name), refs[name], fmt)
        h = quantize_activations(h, fmt) @ w + initializer(prepared, f"fc{i}.bias")
        h = np.maximum(h, 0) if i == 0 else h
    return 100.0 * float(np.mean(h.argmax(axis=1) == data.y))


def device_accuracy(result, data: Calibration) -> float:
    backend = fpga(result.model, result.layer_formats, **result.backend_options)
    return 100.0 * float(np.mean([backend.run({"x": xi[None]})["y"].argmax() == yi for xi, yi in zip(data.x, data.y)]))


def test_fpga_aware_choice_keeps_the_budget_on_the_fpga(outlier, searches) -> None:
    model, data = outlier
    result = searches[ActivationRule.FPGA]
    assert result.report.activations is ActivationRule.FPGA
    independent = numpy_fpga_accuracy(model, result.layer_formats, data)
    assert result.report.accuracy == pytest.approx(independent)  # the score is the fpga's
    assert 100.0 - independent <= BUDGET
    assert 100.0 - device_accuracy(result, data) <= BUDGET
    assert result.layer_formats["fc1.weight"] != "fp32"  # still narrow where it can be


def test_float_choice_misses_the_budget_on_the_fpga(outlier, searches) -> None:
    model, data = outlier
    floated, aware = searches[ActivationRule.FLOAT], searches[ActivationRule.FPGA]
    assert floated.report.activations is ActivationRule.FLOAT
    assert 100.0 - floated.report.accuracy <= BUDGET  # within budget as cpu/gpu compute
    assert 100.0 - numpy_fpga_accuracy(model, floated.layer_formats, data) > BUDGET
    assert 100.0 - device_accuracy(floated, data) > BUDGET
    assert floated.layer_formats != aware.layer_formats


def test_report_says_which_activations_it_measured(outlier, searches) -> None:
    from rich.console import Console

    for rule, result in searches.items():
        console = Console(record=True, width=200)
        result.report.render(console)
        assert rule.description in console.export_text()
    fixed = quantize_model(outlier[0], "msfp12", calibration=outlier[1], activations="fpga")
    assert fixed.report.accuracy == pytest.approx(numpy_fpga_accuracy(outlier[0], fixed.layer_formats, outlier[1]))


@pytest.fixture(scope="module")
def files(outlier, tmp_path_factory):
    """The outlier model and its calibration data as files, for the commands."""
    model, data = outlier
    folder = tmp_path_factory.mktemp("outlier")
    onnx.save(model, str(folder / "outlier.onnx"))
    np.savez(folder / "calib.npz", x=data.x, y=data.y)
    return folder / "outlier.onnx", folder / "calib.npz"


@pytest.mark.parametrize("backend", ["fpga", "cpu", "cpu,fpga"])
def test_deploy_scores_as_its_backends_compute(files, searches, backend: str) -> None:
    from serve.deploy import prepare as deploy

    rule = ActivationRule.FPGA if "fpga" in backend else ActivationRule.FLOAT
    model_file, calib = files
    prepared = deploy([model_file], backend=backend, precision="auto", calibration=str(calib), budget=BUDGET)
    assert prepared.config.layer_formats == searches[rule].layer_formats
    assert f"with {rule} activations" in " ".join(prepared.notes)


def test_quantize_command_takes_the_rule(files, searches, tmp_path, capsys) -> None:
    from serve.cli import main

    model_file, calib = files
    out = tmp_path / "q.onnx"
    assert main(["quantize", str(model_file), "--precision", "auto", "--calibration", str(calib),
                 "--budget", str(BUDGET), "--activations", "fpga", "-o", str(out)]) == 0
    assert ActivationRule.FPGA.description in " ".join(capsys.readouterr().out.split())
    written = {name: fmt.value for name, fmt in layer_formats(onnx.load(str(out))).items()}
    assert written == searches[ActivationRule.FPGA].layer_formats


def test_int8_is_refused_for_the_fpga(outlier) -> None:
    model, data = outlier
    with pytest.raises(ValueError, match="int8"):
        quantize_model(model, "int8", calibration=data, activations="fpga")
    with pytest.raises(ValueError, match="int8"):
        quantize_model(model, "auto", calibration=data, candidates=[Format.INT8], activations="fpga")


def test_rule_follows_the_backends() -> None:
    assert ActivationRule.for_backends(["fpga"]) is ActivationRule.FPGA
    assert ActivationRule.for_backends(["cpu", "fpga"]) is ActivationRule.FPGA  # must hold on both
    assert ActivationRule.for_backends(["cpu"]) is ActivationRule.FLOAT
    assert ActivationRule.for_backends(["gpu", "null"]) is ActivationRule.FLOAT
