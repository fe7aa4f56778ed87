"""kill -9 during `serve deploy` leaves the repository consistent.

A real `serve deploy` of a big model (tens of MB of weights, so its write takes a
while) is SIGKILLed at several points of writing it into a repository that already
serves an older version: as soon as its temp directory appears, with the model
file half written, with it fully written but not yet renamed into place, after a
few seeded random delays, and once the new version is complete. After each kill
a real server starts on the repository and must serve, through tritonclient, the
old model or the new one exactly as onnxruntime runs it, and nothing of the
killed write.
"""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread
from models.convert.onnx_io import finalize
from tests.server.conftest import add_model

WIDTH, HIDDEN = 512, 16384  # the new model's first weight: 512 x 16384 fp32 = 32 MiB
SERVE = Path(sys.executable).with_name("serve")  # the CLI users run
REPO_ROOT = Path(__file__).resolve().parents[2]


def _weights(seed: int, *shape: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)


def _matmuls(*weights: np.ndarray) -> onnx.ModelProto:
    """y = x @ W1, then relu and @ Wi for each further weight: every weight shows in y."""
    nodes, value = [], "x"
    for i in range(len(weights)):
        if i:
            nodes.append(helper.make_node("Relu", [value], [f"r{i}"]))
            value = f"r{i}"
        nodes.append(helper.make_node("MatMul", [value, f"w{i}"], [f"h{i}" if i < len(weights) - 1 else "y"]))
        value = f"h{i}"
    graph = helper.make_graph(
        nodes, "matmuls", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, WIDTH])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        [numpy_helper.from_array(w, f"w{i}") for i, w in enumerate(weights)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    onnx.checker.check_model(model)
    return finalize(model)


def _temp_dirs(model_dir: Path) -> list[Path]:
    return sorted(p for p in model_dir.iterdir() if p.name.startswith("."))


def _new_version_written(model_dir: Path, before: set[str]) -> bool:
    return any(p.name.isdigit() and p.name not in before for p in model_dir.iterdir())


# When to kill, given the temp dirs this deploy made (stale ones left by an earlier
# kill do not count) and the source's size. Each also fires once a new version is
# complete, in case the write outran the poll.
def _temp_dir_appears(temps: list[Path], size: int) -> bool:
    return bool(temps)


def _model_half_written(temps: list[Path], size: int) -> bool:
    return any((t / "model.onnx").is_file() and (t / "model.onnx").stat().st_size >= size // 2 for t in temps)


def _written_not_renamed(temps: list[Path], size: int) -> bool:
    return any((t / "config.json").is_file() for t in temps)


def _after(delay_s: float) -> Callable[[list[Path], int], bool]:
    def fire(temps: list[Path], size: int) -> bool:
        if temps:
            time.sleep(delay_s)
        return bool(temps)

    return fire


def _never(temps: list[Path], size: int) -> bool:
    return False


def _deploy_and_kill(root: Path, source: Path, when: Callable[[list[Path], int], bool],
                     tmp: Path, slo_ms: float) -> tuple[list[Path], bool]:
    """Run `serve deploy` of ``source`` as model "m", SIGKILL it when ``when`` fires.

    Each round deploys another ``slo_ms``: a deploy of a version already complete in the
    repository (same model, same config) reuses it and writes nothing to kill.

    Returns the temp dirs left in the model's directory, and whether one of them is
    this deploy's own (the kill landed mid-write).
    """
    model_dir = root / "m"
    before = {p.name for p in model_dir.iterdir()}
    command = [str(SERVE), "deploy", str(source), "--name", "m", "--repo", str(root),
               "--server", f"unix:{tmp / 'nobody.sock'}", "--port", "0", "--metrics-port", "-1",
               "--slo-ms", str(slo_ms)]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    size = source.stat().st_size
    try:
        deadline = time.monotonic() + 300
        while not (when([t for t in _temp_dirs(model_dir) if t.name not in before], size)
                   or _new_version_written(model_dir, before)):
            if process.poll() is not None:
                pytest.fail(f"serve deploy exited with {process.returncode} before the kill: "
                            f"{process.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "serve deploy never started writing"
            time.sleep(0.0005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
        process.stderr.close()
    left = _temp_dirs(model_dir)
    return left, any(t.name not in before for t in left)


def _reference(path: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]


def _check_serves_old_or_new(root: Path, x: np.ndarray, expected: dict[str, np.ndarray]) -> list[int]:
    """Start a server on the repository: every version it lists serves the old model or the new one."""
    import tritonclient.grpc as grpcclient

    versions = ModelRepository(root).versions("m")
    with ServerThread(ServerConfig(repo=root, port=0, metrics_port=None)) as handle, \
            grpcclient.InferenceServerClient(handle.address) as client:
        index = client.get_model_repository_index(as_json=True)["models"]
        assert sorted((m["name"], int(m["version"]), m["state"]) for m in index) == \
            [("m", v, "READY") for v in versions], "a temp dir must never show as a model or a version"
        feed = grpcclient.InferInput("x", [1, WIDTH], "FP32")
        feed.set_data_from_numpy(x)
        for version in [*map(str, versions), ""]:
            result = client.infer("m", [feed], model_version=version)
            served = result.get_response().model_version
            assert version in ("", served)
            want = expected["old" if served == "1" else "new"]
            np.testing.assert_allclose(result.as_numpy("y"), want, rtol=1e-4, atol=1e-5,
                                       err_msg=f"version {served} is neither the old model nor the new one")
        assert served == str(max(versions)), "the latest complete version serves by default"
    return versions


def test_kill_9_during_deploy_leaves_the_old_or_the_new_model(tmp_path: Path) -> None:
    assert SERVE.is_file(), f"the serve CLI is not installed next to {sys.executable}"
    root = tmp_path / "repo"
    repo = ModelRepository(root)
    old, new = tmp_path / "old.onnx", tmp_path / "new.onnx"
    onnx.save(_matmuls(_weights(1, WIDTH, 16)), old)  # version 1: small
    onnx.save(_matmuls(_weights(2, WIDTH, HIDDEN), _weights(3, HIDDEN, 16)), new)  # big
    assert add_model(repo, old, "m") == 1
    x = np.random.default_rng(0).standard_normal((1, WIDTH)).astype(np.float32)
    expected = {"old": _reference(old, x), "new": _reference(new, x)}
    assert not np.allclose(expected["old"], expected["new"])

    rng = random.Random(7)
    kills = [_temp_dir_appears, _model_half_written, _written_not_renamed,
             *(_after(rng.uniform(0.0, 0.05)) for _ in range(3)), _never]
    mid_write = 0
    for round_, when in enumerate(kills):
        left, own = _deploy_and_kill(root, new, when, tmp_path, slo_ms=1000.0 + round_)
        # A killed write leaves its own temp dir at most: the next deploy removes a dead one's.
        assert len(left) <= int(own), f"round {round_}: stale temp dirs pile up: {left}"
        mid_write += own
        versions = _check_serves_old_or_new(root, x, expected)
        assert versions[0] == 1 and all(v > 1 for v in versions[1:])
    assert mid_write >= 1, "no kill landed while the new version was being written"
    assert versions[-1] > 1, "the deploy that was let finish (killed while serving) wrote the new version"


def test_a_half_deleted_version_neither_serves_nor_stalls_the_next_deploy(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo")
    old = tmp_path / "old.onnx"
    onnx.save(_matmuls(_weights(1, WIDTH, 16)), old)
    assert add_model(repo, old, "m") == 1
    assert add_model(repo, old, "m") == 2
    (repo.root / "m" / "2" / "model.onnx").unlink()  # what a kill -9 in the middle of rmtree leaves
    assert repo.versions("m") == [1]
    assert add_model(repo, old, "m") == 3
    assert repo.versions("m") == [1, 3]
