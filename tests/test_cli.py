"""The `serve` command as a user runs it: deploy starts a server, infer/list talk to it."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

SERVE = [sys.executable, "-m", "serve.cli"]
ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*SERVE, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_deploy_builtin_model_serves_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen([*SERVE, "deploy", "--port", "0", "--metrics-port", "0", "--repo", "repo"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = []
    try:
        deadline = time.monotonic() + 120
        port = None
        while port is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "serve deploy exited early:\n" + "".join(lines)
            lines.append(line)
            match = re.search(r"serving on 127\.0\.0\.1:(\d+), metrics on http://127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
        output = "".join(lines)
        assert port and port != 0, output
        accuracy = float(re.search(r"accuracy ([\d.]+)% on (\d+) held-back", output).group(1))
        assert accuracy > 90.0

        from sklearn.datasets import load_digits

        digits = load_digits()
        with grpcclient.InferenceServerClient(f"127.0.0.1:{port}") as client:
            inp = grpcclient.InferInput("pixels", [1, 64], "FP32")
            inp.set_data_from_numpy(digits.data[:1].astype(np.float32))
            probs = client.infer("digits", [inp]).as_numpy("probabilities")
        assert probs.argmax() == digits.target[0] and abs(probs.sum() - 1) < 1e-5

        infer = _run("infer", "digits", "--server", f"127.0.0.1:{port}", cwd=tmp_path)
        assert infer.returncode == 0, infer.stderr
        assert "probabilities float32[1, 10]" in infer.stdout and "latency" in infer.stdout
        listing = _run("list", "--repo", "repo", "--server", f"127.0.0.1:{port}", cwd=tmp_path)
        assert "digits" in listing.stdout and "READY" in listing.stdout
        bench = _run("bench", "digits", "--server", f"127.0.0.1:{port}", "--requests", "50", cwd=tmp_path)
        assert bench.returncode == 0 and "requests ok 50, errors 0" in bench.stdout, bench.stdout + bench.stderr
        missing = _run("infer", "nope", "--server", f"127.0.0.1:{port}", cwd=tmp_path)
        assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "stopping: draining" in rest


def test_deploy_of_a_corrupt_file_fails_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage")
    result = _run("deploy", "bad.onnx", "--repo", "repo", "--server", "127.0.0.1:1", "--port", "0", cwd=tmp_path)
    assert result.returncode == 1
    assert "deploy failed" in result.stderr and "bad.onnx" in result.stderr
    assert not (tmp_path / "repo" / "bad").exists(), "nothing may be written for a refused model"


def test_help_lists_every_command() -> None:
    result = _run("--help", cwd=ROOT)
    for command in ("deploy", "start", "list", "undeploy", "infer", "bench"):
        assert command in result.stdout


def test_deploy_into_a_running_server_and_a_refused_load_is_undone(tmp_path: Path) -> None:
    """`serve deploy --server`: loads through RepositoryModelLoad; a load the server refuses
    is reported with the server's own words and its version removed; the rest keeps serving."""
    import onnx
    import onnxruntime
    import pytest

    from models.examples import mlp
    from serve.repository import ModelRepository
    from serve.server import ServerConfig, ServerThread

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("the gpu backend loads here: no refusal to provoke")
    onnx.save(mlp.build(), tmp_path / "mlp.onnx")
    repo = ModelRepository(tmp_path / "repo")
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None)) as handle:
        target = ("--repo", "repo", "--server", handle.address)
        ok = _run("deploy", "mlp.onnx", *target, cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        assert f"loaded into the server at {handle.address}" in ok.stderr
        refused = _run("deploy", "mlp.onnx", "--name", "on-gpu", "--backend", "gpu", *target, cwd=tmp_path)
        assert refused.returncode == 1
        message = " ".join(refused.stderr.split())  # rich wraps lines
        assert "refused the model" in message and "CUDAExecutionProvider" in message
        assert "[gpu]" in message, "the server's hint names the extra; it must not be eaten as markup"
        assert repo.versions("on-gpu") == [] and repo.models() == ["mlp"]
        with grpcclient.InferenceServerClient(handle.address) as client:
            x = np.random.default_rng(0).random((1, 784), dtype=np.float32)
            inp = grpcclient.InferInput("input", [1, 784], "FP32")
            inp.set_data_from_numpy(x)
            got = client.infer("mlp", [inp]).as_numpy("logits")
    want = onnxruntime.InferenceSession(str(tmp_path / "mlp.onnx")).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _run_without_runtime(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`serve ARGS` in a Python where onnxruntime cannot be imported: a client-only install."""
    code = ("import sys; sys.modules['onnxruntime'] = None; "  # import and find_spec both fail
            "from serve.cli import main; sys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_without_a_runtime_model_commands_say_which_extra_and_client_commands_work(tmp_path: Path) -> None:
    """The runtime is an extra ([cpu] or [gpu], never both): without it `serve deploy`,
    `start`, `convert` and `quantize` stop with the install hint, and the client commands
    still talk to a server."""
    import onnx

    from models.examples import mlp
    from serve.repository import ModelRepository
    from serve.server import ServerConfig, ServerThread

    onnx.save(mlp.build(), tmp_path / "mlp.onnx")
    before = sorted(tmp_path.rglob("*"))
    for command in (["deploy", "mlp.onnx"], ["start"], ["convert", "mlp.onnx", "-o", "out.onnx"],
                    ["quantize", "mlp.onnx", "--precision", "msfp16"]):
        done = _run_without_runtime(*command, cwd=tmp_path)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert f"serve {command[0]}: onnxruntime is not installed" in done.stderr
        assert "bwserve[cpu]" in done.stderr and "bwserve[gpu]" in done.stderr
    assert sorted(tmp_path.rglob("*")) == before, "a refused command wrote nothing"

    repo = ModelRepository(tmp_path / "repo")
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None)) as handle:
        ok = _run("deploy", "mlp.onnx", "--repo", "repo", "--server", handle.address, cwd=tmp_path)
        assert ok.returncode == 0, ok.stderr
        infer = _run_without_runtime("infer", "mlp", "--server", handle.address, cwd=tmp_path)
        assert infer.returncode == 0, infer.stderr
        assert "logits float32[1, 10]" in infer.stdout
        listing = _run_without_runtime("list", "--repo", "repo", "--server", handle.address, cwd=tmp_path)
        assert listing.returncode == 0 and "mlp" in listing.stdout and "READY" in listing.stdout


def test_the_cpu_and_gpu_runtimes_are_alternative_extras() -> None:
    """onnxruntime and onnxruntime-gpu install the same module over each other: neither may
    be a base dependency, and each extra brings exactly one."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() for r in requirements}

    runtimes = {"onnxruntime", "onnxruntime-gpu"}
    assert not names(project["dependencies"]) & runtimes
    extras = project["optional-dependencies"]
    assert names(extras["cpu"]) & runtimes == {"onnxruntime"}
    assert names(extras["gpu"]) & runtimes == {"onnxruntime-gpu"}
    assert all(not names(reqs) & runtimes for extra, reqs in extras.items() if extra not in ("cpu", "gpu"))


def test_the_container_image_installs_its_variants_runtime_extra() -> None:
    """deploy/Containerfile: VARIANT names the runtime extra installed (cpu by default), so
    the image has exactly one runtime; an image with none would refuse to serve."""
    import re
    import tomllib

    text = (ROOT / "deploy" / "Containerfile").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert re.search(r"^ARG VARIANT=cpu$", text, re.M)
    (installed,) = re.findall(r'pip install "\.\[([^\]]*)\]"', text)
    assert "$VARIANT" in installed.split(",")
    assert {"cpu", "gpu"} <= set(extras)
    commands = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "pip uninstall" not in commands and not re.search(r"pip install [^\n]*onnxruntime", commands), \
        "no runtime installed or swapped by hand beside the extra"
