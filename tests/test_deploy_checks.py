"""`serve deploy` refusals: every argument checked before any work, one sentence, the repository untouched."""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from models.examples import mlp
from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread
from tests.serve_cli import one_sentence, run, tree


@pytest.mark.parametrize("args, said", [
    (["--name", "../evil"], "invalid model name '../evil'"),
    (["--backend", "tpu"], "unknown backend 'tpu'; expected one of cpu, fpga, gpu, null"),
    (["--backend", "cpu,tpu"], "unknown backend 'tpu'"),
    (["--backend", "fpga", "--option", "arry=16x16"], "unknown fpga option(s) ['arry']"),
    (["--precision", "msfp7"], "unknown precision 'msfp7'"),
    (["--precision", "auto"], "give --calibration"),
    (["--precision", "msfp16", "--calibration", "nowhere.npz"], "--calibration 'nowhere.npz' is neither"),
    (["--instances", "0"], "instances must be >= 1"),
    (["--option", "spinning"], "--option 'spinning': expected KEY=VALUE"),
    (["--tls-cert", "c.pem"], "TLS needs both --tls-cert and --tls-key"),
])
def test_a_bad_argument_is_refused_before_the_model_is_read(tmp_path: Path, args, said) -> None:
    """The model file is corrupt: had its conversion started, that would be the error instead."""
    (tmp_path / "model.onnx").write_bytes(b"\x00 not a model")
    before = tree(tmp_path)
    done = run("deploy", "model.onnx", "--repo", "repo", "--server", "127.0.0.1:1", "--port", "0",
                *args, cwd=tmp_path)
    assert done.returncode != 0
    assert said in one_sentence(done.stderr), done.stderr
    assert tree(tmp_path) == before, "a refused deploy writes nothing"


@pytest.fixture()
def running(tmp_path: Path):
    onnx.save(mlp.build(sizes=(16, 8, 4)), tmp_path / "mlp.onnx")
    repo = ModelRepository(tmp_path / "repo")
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None)) as handle:
        yield repo, handle


def test_a_deploy_the_server_refuses_leaves_the_repository_as_it_was(tmp_path: Path, running) -> None:
    repo, handle = running
    target = ("--repo", "repo", "--server", handle.address)
    assert run("deploy", "mlp.onnx", *target, cwd=tmp_path).returncode == 0
    before = tree(repo.root)
    # An unknown backend is refused by name before anything is converted or sent.
    tpu = run("deploy", "mlp.onnx", "--name", "other", "--backend", "tpu", *target, cwd=tmp_path)
    assert tpu.returncode == 1 and "unknown backend 'tpu'" in one_sentence(tpu.stderr)
    # The server refuses a load it cannot do (a deploy into a server does no trial load here).
    refused = run("deploy", "mlp.onnx", "--name", "other", "--backend", "null", "--option", "load_ms=x",
                   *target, cwd=tmp_path)
    assert refused.returncode == 1 and "refused the model" in refused.stderr, refused.stderr
    assert tree(repo.root) == before, "no version, no empty model folder"


def test_deploying_the_same_model_again_reuses_its_version(tmp_path: Path, running) -> None:
    repo, handle = running
    target = ("--repo", "repo", "--server", handle.address)
    first = run("deploy", "mlp.onnx", *target, cwd=tmp_path)
    again = run("deploy", "mlp.onnx", *target, cwd=tmp_path)
    assert first.returncode == again.returncode == 0, first.stderr + again.stderr
    assert "wrote mlp version 1" in first.stderr
    assert "mlp version 1 in repo is this model with this config: reusing it" in " ".join(again.stderr.split())
    assert repo.versions("mlp") == [1]
    changed = run("deploy", "mlp.onnx", "--slo-ms", "50", *target, cwd=tmp_path)  # another config
    assert "wrote mlp version 2" in changed.stderr and repo.versions("mlp") == [1, 2]




def test_a_tensorflow_deploy_prints_none_of_tensorflows_start_up_lines(tmp_path: Path, running) -> None:
    """TensorFlow and absl log a dozen lines on import and conversion (oneDNN, CPU features,
    deprecations); `serve deploy` keeps them back unless --verbose."""
    np = pytest.importorskip("numpy")
    tf = pytest.importorskip("tensorflow")
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="X")
        tf.identity(tf.nn.relu(tf.matmul(x, tf.constant(np.eye(4, dtype=np.float32)))), name="output")
    (tmp_path / "frozen.pb").write_bytes(graph.as_graph_def().SerializeToString())
    repo, handle = running
    done = run("deploy", "frozen.pb", "--repo", "repo", "--server", handle.address, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "loaded into the server" in done.stderr and "(tf)" in done.stderr
    noise = [line for line in done.stderr.splitlines()
             if line.startswith(("I0000", "W0000", "WARNING", "To enable")) or "tensorflow" in line.lower()]
    assert not noise, noise
