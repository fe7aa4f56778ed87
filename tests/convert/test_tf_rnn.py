"""Recurrent TensorFlow graphs through tf2onnx (issue 24), each against TensorFlow itself.

Keras LSTM, GRU (reset_after true and false), SimpleRNN, Bidirectional LSTM, two stacked
layers, return_sequences and masking, each as a .keras file, a SavedModel and a frozen
GraphDef (placeholder of unknown batch, or of unknown rank with ``--input-shape``); TF1
``rnn_cell`` GRU/LSTM cells unrolled by ``dynamic_rnn`` and a Keras 2 GRU (tf_keras).
Converted: within 1e-4 of TensorFlow's logits (relative to their largest). Deployed with
``serve deploy --input-shape`` into a running server and called over gRPC: cpu within
1e-4 again; fpga within the tolerances of the CNTK MNIST test (rtol 1e-3, atol 1e-4 of
the scale) and the same class as TensorFlow on every test digit.
"""
from __future__ import annotations

import numpy as np
import pytest

from models.convert import ConversionError, convert
from serve.cli import main

from . import _tf_rnn_models as zoo
from ._util import run_onnx

KERAS_IDS = [f"{kind}-{fmt}" for kind in zoo.LAYERS for fmt in zoo.FORMATS]
FPGA_OPTIONS = ["--option", "array=16x16"]
# tf2onnx turns these into ONNX Loop (Keras 3 GRU, SimpleRNN, masked LSTM) or Scan (TF1
# cells), which run on the host under fpga; their bodies read tensors of the outer graph,
# which the host partition must take as inputs.
LOOPS = {"gru", "gru_reset_before", "simple_rnn", "stacked", "sequences", "masked", "tf1_gru_cell", "tf1_lstm_cell"}


def _served():
    """Every Keras layer from its frozen graph of unknown rank (the --input-shape path),
    and the legacy ones, on each backend."""
    for name in [f"{kind}-frozen_unranked" for kind in zoo.LAYERS] + list(zoo.LEGACY):
        yield pytest.param(name, "cpu", id=f"{name}-cpu")
        yield pytest.param(name, "fpga", id=f"{name}-fpga")


@pytest.fixture(scope="module")
def cases(tf, tmp_path_factory):
    """Every case by id; the legacy ones only where tf_keras is installed."""
    folder = tmp_path_factory.mktemp("tf_rnn")
    found = {f"{kind}-{fmt}": case for kind in zoo.LAYERS for fmt, case in zoo.keras_cases(tf, kind, folder).items()}
    try:
        import tf_keras
    except ImportError:
        return found
    return found | {kind: zoo.legacy_case(tf, tf_keras, kind, folder) for kind in zoo.LEGACY}


def _case(cases, name: str) -> zoo.Case:
    if name not in cases:
        pytest.skip("tf_keras is not installed (tf.compat.v1.nn.rnn_cell needs it under Keras 3)")
    return cases[name]


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("name", KERAS_IDS + list(zoo.LEGACY))
def test_converted_model_matches_tensorflow(cases, name):
    case = _case(cases, name)
    result = convert(case.path, input_shapes=case.input_shapes)
    (spec,) = result.summary.inputs
    assert spec.shape == (1, *case.x.shape[1:])  # batch 1, every dimension static
    feed = spec.name
    got = np.concatenate([run_onnx(result.model, {feed: row[None]})[0] for row in case.x])
    err = _relative_error(got, case.want)
    print(f"{name}: {err:.1e} relative; ops {result.summary.op_counts}")
    assert err <= 1e-4, err


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from serve.server import ServerConfig, ServerThread

    repo = tmp_path_factory.mktemp("repo")
    with ServerThread(ServerConfig(repo=repo, port=0, metrics_port=None)) as handle:
        handle.repo = repo
        yield handle


def _deploy(server, case: zoo.Case, name: str, backend: str) -> None:
    shapes = [f"--input-shape={n}={','.join(map(str, d))}" for n, d in (case.input_shapes or {}).items()]
    options = FPGA_OPTIONS if backend == "fpga" else []
    argv = ["deploy", str(case.path), "--name", name, "--backend", backend, *shapes, *options,
            "--repo", str(server.repo), "--server", server.address]
    assert main(argv) == 0, argv


def _host_ops(server, name: str) -> list[str]:
    """Op types the fpga compiler left to the host for the deployed model."""
    import onnx

    from serve.repository import ModelRepository
    from tests.fpga.conftest import fpga

    repo = ModelRepository(server.repo)
    model = onnx.load(str(repo.version_dir(name, repo.versions(name)[-1]) / "model.onnx"))
    program = fpga(model, array="16x16").program
    return sorted({node.op_type for part in program.host_parts for node in part.graph.node})


@pytest.mark.parametrize("name,backend", _served())
def test_served_over_grpc_matches_tensorflow(cases, server, name, backend):
    import tritonclient.grpc as grpcclient

    from tests.server.test_infer import _infer

    case = _case(cases, name)
    model = f"{name.replace('-', '_')}_{backend}"
    _deploy(server, case, model, backend)
    with grpcclient.InferenceServerClient(server.address) as client:
        meta = client.get_model_metadata(model)
        feed, fetch = meta.inputs[0].name, meta.outputs[0].name
        got = np.concatenate([_infer(client, model, {feed: row[None]}).as_numpy(fetch) for row in case.x])
    err = _relative_error(got, case.want)
    if backend == "cpu":
        assert err <= 1e-4, err
        return
    np.testing.assert_allclose(got, case.want, rtol=1e-3, atol=1e-4 * np.abs(case.want).max())
    assert (got.argmax(axis=1) == case.want.argmax(axis=1)).all()
    host = _host_ops(server, model)
    print(f"{name}: fpga {err:.1e} relative; on the host: {host}")
    assert not {"LSTM", "GRU"} & set(host), "tf2onnx's recurrent nodes are lowered to the device"
    assert bool({"Loop", "Scan"} & set(host)) == (name.split("-")[0] in LOOPS)


# -- errors: one sentence that names what was wrong and the flag to pass ------------------

def test_unknown_rank_placeholder_without_input_shape_names_it_and_the_flag(cases, server, capsys):
    case = cases["gru-frozen_unranked"]
    sentence = "placeholder 'X' has no static shape (unknown rank), so pass it: --input-shape X=D0,D1,..."
    with pytest.raises(ConversionError) as refused:
        convert(case.path)
    assert str(refused.value) == f"{case.path}: {sentence}"
    assert main(["deploy", str(case.path), "--repo", str(server.repo), "--server", server.address]) == 1
    assert sentence in " ".join(capsys.readouterr().err.split())


def test_input_shape_for_a_name_that_is_not_an_input(cases, tmp_path, capsys):
    case = cases["gru-frozen_unranked"]
    with pytest.raises(ConversionError, match=r"--input-shape names 'Y', which is not an input of the model "
                                              r"\(its inputs: X\)"):
        convert(case.path, input_shapes={"X": [1, 64], "Y": [1, 3]})
    assert main(["convert", str(case.path), "-o", str(tmp_path / "m.onnx"), "--input-shape", "Y=1,3"]) == 1
    assert "--input-shape names 'Y'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["convert", "deploy"])
def test_malformed_input_shape_is_refused_by_both_commands(tmp_path, capsys, command):
    argv = [command, str(tmp_path / "frozen.pb"), "--input-shape", "X=1,,64"]
    with pytest.raises(SystemExit) as exit_:
        main(argv + (["-o", str(tmp_path / "m.onnx")] if command == "convert" else []))
    assert exit_.value.code == 2
    assert "argument --input-shape: expected NAME=D0,D1,... with positive integers or symbolic names, got " \
           "'X=1,,64'" in " ".join(capsys.readouterr().err.split())


def test_input_shape_sets_an_onnx_models_symbolic_dimensions(cases, tmp_path):
    from models.convert import save

    case = cases["lstm-frozen"]
    dynamic = convert(case.path, dynamic_batch=True)
    assert dynamic.summary.inputs[0].shape[0] not in (1, None)  # symbolic
    save(dynamic.model, tmp_path / "dynamic.onnx")
    fixed = convert(tmp_path / "dynamic.onnx", input_shapes={"X": [1, zoo.STEPS, zoo.FEATURES]})
    assert fixed.summary.inputs[0].shape == (1, zoo.STEPS, zoo.FEATURES)
    assert all(isinstance(d, int) for d in fixed.summary.outputs[0].shape)
    got = run_onnx(fixed.model, {"X": case.x[:1]})[0]
    assert _relative_error(got, case.want[:1]) <= 1e-4
    with pytest.raises(ConversionError, match=r"--input-shape gives 'X' 2 dimensions, but the model's input has 3"):
        convert(tmp_path / "dynamic.onnx", input_shapes={"X": [1, 64]})
