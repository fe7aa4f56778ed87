"""`serve start --model-dir DIR --model-name NAME`: KServe's layout, health, and SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import onnx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from protos import inference_pb2 as pb
from protos import inference_pb2_grpc as pb_grpc
from serve.client import Client, build_request
from serve.deploy import prepare
from serve.errors import InvalidModel, ModelNotFound
from serve.health import LIVENESS_SERVICE
from serve.modeldir import serve_model_dir
from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread
from tests.kserve.proc import ROOT, start_serve, stop
from tests.server.conftest import two_output_model

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _status(channel, service: str) -> int:
    return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    model_dir = tmp_path / "mnt-models"
    model_dir.mkdir()
    onnx.save(two_output_model(), model_dir / "model.onnx")
    return model_dir


def test_a_folder_with_one_model_file_is_deployed_to_a_temp_repo_and_served_under_the_name(
        tmp_path: Path, model_file: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    os.chmod(model_file, 0o555)  # KServe mounts /mnt/models read-only
    proc, port, _ = start_serve(["--model-dir", str(model_file), "--model-name", "adder", "--port", "0",
                                 "--metrics-port", "-1", "--grace-s", "1"], env={"TMPDIR": str(tmp)})
    try:
        with Client(f"127.0.0.1:{port}") as client:
            x = np.arange(4, dtype=np.float32).reshape(1, 4)
            assert np.array_equal(client.infer("adder", {"a": x, "b": x})["sum"], 2 * x)
            for service in ("", "adder", LIVENESS_SERVICE):
                assert _status(client.channel, service) == SERVING, service
            assert len(list(tmp.glob("bwserve-repo-*"))) == 1  # the temporary repository
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert list(tmp.glob("bwserve-repo-*")) == [], "the temporary repository is removed at exit"
        assert sorted(p.name for p in model_file.iterdir()) == ["model.onnx"]
    finally:
        os.chmod(model_file, 0o755)
        stop(proc)


def test_sigterm_turns_health_not_serving_before_the_server_stops(model_file: Path) -> None:
    proc, port, _ = start_serve(["--model-dir", str(model_file), "--model-name", "adder", "--port", "0",
                                 "--metrics-port", "-1", "--grace-s", "2", "--drain-delay-s", "3"])
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watches = [health.Watch(health_pb2.HealthCheckRequest(service=name), timeout=30)
                       for name in ("", "adder", LIVENESS_SERVICE)]
            assert [next(w).status for w in watches] == [SERVING] * 3
            proc.send_signal(signal.SIGTERM)
            # The streams say NOT_SERVING while the server still runs (they stay open
            # until the grace period ends), so balancers see it before RPCs fail.
            assert [next(w).status for w in watches] == [NOT_SERVING] * 3
            # During the drain delay it still serves whoever has not moved away yet.
            x = np.ones((1, 4), np.float32)
            reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                build_request("adder", {"a": x, "b": x}), timeout=5)
            assert reply.model_name == "adder"
        assert proc.wait(timeout=30) == 0
    finally:
        stop(proc)


def test_a_repository_is_served_in_place_and_only_the_named_model(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo")
    for name in ("first", "second"):
        source = tmp_path / f"{name}.onnx"
        onnx.save(two_output_model(), source)
        prepared = prepare([source], name=name, backend="null")
        repo.add(prepared.config, prepared.model_bytes)
    served = serve_model_dir(repo.root, "second")
    assert served.repo == repo.root and served.model == "second" and not served.temporary
    proc, port, _ = start_serve(["--model-dir", str(repo.root), "--model-name", "second", "--port", "0",
                                 "--metrics-port", "-1", "--grace-s", "1"])
    try:
        with Client(f"127.0.0.1:{port}") as client:
            assert [(m.name, m.state) for m in client.index() if m.state == "READY"] == [("second", "READY")]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        stop(proc)


def test_a_kept_repo_gets_the_new_file_not_old_versions(tmp_path: Path, model_file: Path) -> None:
    kept = tmp_path / "kept"
    for _ in range(2):  # a restarted container with a persistent --repo
        served = serve_model_dir(model_file, "adder", kept, backend="null")
        assert not served.temporary and served.repo == kept
    assert ModelRepository(kept).versions("adder") == [1]


def test_layouts_that_are_not_one_model_are_refused_with_the_reason(tmp_path: Path, model_file: Path) -> None:
    (model_file / "notes.txt").write_text("beside one .onnx file: ignored")
    assert serve_model_dir(model_file, "adder", tmp_path / "r", backend="null").model == "adder"
    onnx.save(two_output_model(), model_file / "other.onnx")  # two models: which one?
    with pytest.raises(InvalidModel, match="other.onnx"):
        serve_model_dir(model_file, "adder")
    with pytest.raises(ModelNotFound, match="no such directory"):
        serve_model_dir(tmp_path / "absent", "adder")
    with pytest.raises(InvalidModel, match="invalid model name"):
        serve_model_dir(model_file, "../x")
    result = subprocess.run([sys.executable, "-m", "serve.cli", "start", "--model-dir", str(model_file),
                             "--model-name", "adder", "--port", "0"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1 and "other.onnx" in result.stderr


def test_a_repository_without_the_name_is_refused(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo")
    source = tmp_path / "m.onnx"
    onnx.save(two_output_model(), source)
    prepared = prepare([source], name="other", backend="null")
    repo.add(prepared.config, prepared.model_bytes)
    with pytest.raises(ModelNotFound, match="has no model 'wanted'.*other"):
        serve_model_dir(repo.root, "wanted")


def test_overall_health_follows_the_required_model_and_per_model_names_follow_loads(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo")
    repo.root.mkdir()
    handle = ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None, models=("late",)))
    try:
        with grpc.insecure_channel(handle.address) as channel:
            # Alive, but not ready: the model it was started for is missing.
            assert _status(channel, LIVENESS_SERVICE) == SERVING
            assert _status(channel, "") == NOT_SERVING
            assert _status(channel, "late") == NOT_SERVING
            watch_all = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""),
                                                                  timeout=30)
            watch_late = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="late"),
                                                                   timeout=30)
            assert next(watch_all).status == NOT_SERVING and next(watch_late).status == NOT_SERVING
            source = tmp_path / "m.onnx"
            onnx.save(two_output_model(), source)
            prepared = prepare([source], name="late", backend="null")
            repo.add(prepared.config, prepared.model_bytes)
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="late"), timeout=60)
            assert next(watch_all).status == SERVING and next(watch_late).status == SERVING
            stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="late"), timeout=60)
            assert next(watch_all).status == NOT_SERVING and next(watch_late).status == NOT_SERVING
    finally:
        handle.stop(grace=1)
