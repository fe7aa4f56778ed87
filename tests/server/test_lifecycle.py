"""Models come and go while others serve: versions, load/unload, corrupt files, real models."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
from onnx import numpy_helper

from serve.config import ModelConfig, TensorSpec
from serve.deploy import prepare
from serve.errors import InvalidModel
from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread
from tests.old_exporter import mnist_folder, reference_sets
from tests.server.conftest import add_model, digits_sample, two_output_model


def _digits_ok(client) -> bool:
    x, label = digits_sample(5)
    inp = grpcclient.InferInput("pixels", [1, 64], "FP32")
    inp.set_data_from_numpy(x)
    return client.infer("digits", [inp]).as_numpy("probabilities").argmax() == label


@pytest.fixture()
def fresh(tmp_path, digits_model):
    repo = ModelRepository(tmp_path / "repo")
    add_model(repo, digits_model, "digits")
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None)) as handle:
        with grpcclient.InferenceServerClient(handle.address) as client:
            yield repo, handle, client


@pytest.mark.parametrize("kind", ["cntk", "made-here"])
def test_cntk_mnist_test_sets_come_back_through_grpc(fresh, kind, tmp_path_factory) -> None:
    """An old exporter's file (opset 8, IR 3: CNTK's MNIST, or one made alike here) is
    upgraded at deploy and answers its own test sets through gRPC."""
    repo, _, client = fresh
    folder = mnist_folder(kind, tmp_path_factory)
    add_model(repo, folder / "model.onnx", "mnist")
    client.load_model("mnist")
    meta = client.get_model_metadata("mnist")
    name, shape = meta.inputs[0].name, list(meta.inputs[0].shape)
    for x, want in reference_sets(folder):
        inp = grpcclient.InferInput(name, shape, "FP32")
        inp.set_data_from_numpy(x.reshape(shape).astype(np.float32))
        got = client.infer("mnist", [inp]).as_numpy(meta.outputs[0].name)
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-3, atol=1e-3)


def test_newest_version_serves_unless_one_is_named(fresh) -> None:
    repo, _, client = fresh
    add_model(repo, two_output_model(), "arith")
    # Version 2: same signature, 'sum' replaced by a product, so the versions differ visibly.
    model = two_output_model()
    model.graph.node[0].op_type = "Mul"
    add_model(repo, model, "arith")
    client.load_model("arith")
    assert sorted(client.get_model_metadata("arith").versions) == ["1", "2"]
    a = np.full((1, 4), 3, np.float32)
    b = np.full((1, 4), 2, np.float32)

    def run(version=""):
        ins = []
        for n, v in (("a", a), ("b", b)):
            i = grpcclient.InferInput(n, [1, 4], "FP32")
            i.set_data_from_numpy(v)
            ins.append(i)
        return client.infer("arith", ins, model_version=version).as_numpy("sum")[0, 0]

    assert run() == 6.0 and run("2") == 6.0 and run("1") == 5.0


def test_load_and_unload_while_another_model_serves(fresh) -> None:
    repo, handle, client = fresh
    errors, stop = [], threading.Event()

    def hammer():
        with grpcclient.InferenceServerClient(handle.address) as c:
            while not stop.is_set():
                try:
                    assert _digits_ok(c)
                except Exception as exc:  # noqa: BLE001 - any failure is the finding
                    errors.append(exc)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        for _ in range(3):
            add_model(repo, two_output_model(), "side")
            client.load_model("side")
            assert client.is_model_ready("side")
            client.unload_model("side")
            assert not client.is_model_ready("side")
    finally:
        stop.set()
        thread.join()
    assert not errors, errors[:3]
    stats = client.get_inference_statistics("digits").model_stats[0]
    assert stats.inference_stats.success.count > 0 and stats.inference_stats.fail.count == 0


def test_corrupt_model_file_is_refused_at_deploy(tmp_path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(InvalidModel, match="broken.onnx"):
        prepare([bad])


def test_unsupported_operator_is_refused_at_deploy(tmp_path) -> None:
    model = two_output_model()
    model.graph.node[0].op_type = "NoSuchOp"
    path = tmp_path / "weird.onnx"
    onnx.save(model, path)
    with pytest.raises(InvalidModel, match="NoSuchOp"):
        prepare([path])


def test_corrupt_version_on_disk_fails_its_load_and_the_rest_keeps_serving(fresh) -> None:
    repo, _, client = fresh
    # Bypass deploy's checks, as a file damaged on disk would.
    config = ModelConfig(name="digits", inputs=(TensorSpec("pixels", "FP32", (1, 64)),),
                         outputs=(TensorSpec("probabilities", "FP32", (1, 10)),))
    repo.add(config, b"\x08\x07garbage")
    with pytest.raises(grpcclient.InferenceServerException) as info:
        client.load_model("digits")
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "cannot load model.onnx" in info.value.message()
    assert _digits_ok(client), "version 1 must keep serving"
    index = {(m["name"], m["version"]): m for m in client.get_model_repository_index(as_json=True)["models"]}
    assert index[("digits", "1")]["state"] == "READY"
    assert index[("digits", "2")]["state"] == "UNAVAILABLE" and "load failed" in index[("digits", "2")]["reason"]
    with pytest.raises(grpcclient.InferenceServerException) as info:
        client.get_model_metadata("digits", "2")
    assert info.value.status() == "StatusCode.UNAVAILABLE"


def _side_request() -> list:
    inputs = [grpcclient.InferInput(n, [1, 4], "FP32") for n in ("a", "b")]
    for inp in inputs:
        inp.set_data_from_numpy(np.ones((1, 4), np.float32))
    return inputs


def test_a_model_still_loading_is_unavailable_and_one_that_failed_says_why(fresh) -> None:
    repo, _, client = fresh
    add_model(repo, two_output_model(), "side", backend="null", backend_options={"load_ms": "1500"})
    loader = threading.Thread(target=client.load_model, args=("side",))
    loader.start()
    seen = None
    while loader.is_alive() and seen is None:
        try:
            client.infer("side", _side_request())
        except grpcclient.InferenceServerException as exc:
            if "is loading" in exc.message():
                seen = exc
    loader.join()
    assert seen is not None, "no request landed while the model loaded"
    assert seen.status() == "StatusCode.UNAVAILABLE"  # clients retry UNAVAILABLE; NOT_FOUND they would not
    assert "model 'side' is loading (version 1)" in seen.message()
    assert client.infer("side", _side_request()).as_numpy("sum").tolist() == [[0, 0, 0, 0]]  # null: zeros
    assert _digits_ok(client)

    config = ModelConfig(name="broken", inputs=(TensorSpec("a", "FP32", (1, 4)),),
                         outputs=(TensorSpec("sum", "FP32", (1, 4)),))
    repo.add(config, b"\x08\x07garbage")
    with pytest.raises(grpcclient.InferenceServerException):
        client.load_model("broken")
    with pytest.raises(grpcclient.InferenceServerException) as info:
        client.infer("broken", _side_request()[:1])
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert "model 'broken' is not serving: version 1 load failed" in info.value.message()


def test_a_crashed_deploy_leaves_nothing_the_server_loads(fresh, digits_model) -> None:
    repo, _, client = fresh
    half = repo.root / "digits" / ".tmp-crashed"
    half.mkdir()
    (half / "model.onnx").write_bytes(digits_model.SerializeToString()[:100])
    assert repo.versions("digits") == [1]
    client.load_model("digits")
    assert _digits_ok(client)


def test_unknown_model_load_is_not_found(fresh) -> None:
    _, _, client = fresh
    with pytest.raises(grpcclient.InferenceServerException) as info:
        client.load_model("ghost")
    assert info.value.status() == "StatusCode.NOT_FOUND"


def test_path_like_model_names_are_refused(fresh) -> None:
    _, _, client = fresh
    with pytest.raises(grpcclient.InferenceServerException) as info:
        client.load_model("../etc")
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT" and "invalid model name" in info.value.message()


def test_health_and_reflection(fresh) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    _, handle, _ = fresh
    with grpc.insecure_channel(handle.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        services = {s.name for s in next(replies).list_services_response.service}
        assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services
        replies = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="inference.GRPCInferenceService")]))
        assert next(replies).file_descriptor_response.file_descriptor_proto


def test_model_uploads_and_config_overrides_are_refused_not_ignored(fresh) -> None:
    _, _, client = fresh
    with pytest.raises(grpcclient.InferenceServerException) as info:
        client.load_model("digits", files={"file:1/model.onnx": b"\x08\x07not a model"})
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "not supported" in info.value.message() and "file:1/model.onnx" in info.value.message()
    assert _digits_ok(client), "the served version is untouched"


def _dead_pid() -> str:
    """The pid of a process that has exited (a writer killed mid-write)."""
    return subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_only_dead_writers_of_this_pid_namespace_lose_their_temp_dirs(tmp_path) -> None:
    """A repository on a shared volume: a pid from another host or container means nothing here."""
    from serve import repository

    gone = _dead_pid()
    ours = repository._WRITER_NAMESPACE
    names = {f".tmp-{gone}.{ours}-x": False,  # its writer died: deleted
             f".tmp-{os.getpid()}.{ours}-x": True,  # still being written
             f".tmp-{gone}.0123456789ab-x": True,  # a writer elsewhere: cannot be checked, kept
             ".tmp-crashed": True}  # not a name we write: never guessed at
    for name in names:
        (tmp_path / name).mkdir()
    repository.remove_stale(tmp_path)
    assert {n: (tmp_path / n).exists() for n in names} == names


def test_a_server_start_removes_what_dead_writers_left(tmp_path, digits_model) -> None:
    """Scratch folders of deploys and removals killed mid-write go when a server starts;
    a live writer's stays, and the model serves."""
    from serve import repository

    gone = _dead_pid()
    ours = repository._WRITER_NAMESPACE
    repo = ModelRepository(tmp_path / "repo")
    add_model(repo, digits_model, "digits")
    dead = [repo.root / "digits" / f".tmp-{gone}.{ours}-a", repo.root / f".rm-{gone}.{ours}-old-b"]
    live = repo.root / "digits" / f".tmp-{os.getpid()}.{ours}-c"
    for path in (*dead, live):
        path.mkdir()
        (path / "model.onnx").write_bytes(b"half written")
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None)) as handle:
        with grpcclient.InferenceServerClient(handle.address) as client:
            assert _digits_ok(client)
    assert not any(p.exists() for p in dead) and live.exists()
