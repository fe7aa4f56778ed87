"""The overload benchmark's load generators against a real server.

benchmarks/loadgen.py (grpc.aio) and benchmarks/loadgen.cc (gRPC's C++ library,
built by ``admission.build_loadgen_cc``) take the same command line and print the
same JSON line; ``benchmarks/admission.py --generator`` picks one. What both must
get right for its tables to mean anything: every call sent is counted once, by
them and by the server, and every failure is filed under its gRPC status and the
first words of its message, the same way by both. The C++ one is skipped where
gRPC's C++ headers are missing (Debian's libgrpc++-dev; .ci/setup installs it).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from protos import inference_pb2 as pb
from serve.client import Client, build_request
from serve.deploy import prepare
from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import admission  # noqa: E402

HAVE_GRPCPP = shutil.which("pkg-config") is not None and subprocess.run(
    ["pkg-config", "--exists", "grpc++"]).returncode == 0
WARMUP = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Two null models: "echo" answers at once, "slow" takes 50 ms and refuses what cannot wait that long."""
    work = tmp_path_factory.mktemp("loadgen")
    source = work / "echo.onnx"
    onnx.save(admission.echo_model(), source)
    repo = ModelRepository(work / "repo")
    for name, sleep_ms in (("echo", "0"), ("slow", "50")):
        prepared = prepare([source], name=name, backend="null", backend_options={"sleep_ms": sleep_ms})
        repo.add(prepared.config.replace(warmup_runs=2), prepared.model_bytes)
    inputs = {"x": np.random.default_rng(0).random((1, 16), dtype=np.float32)}
    requests = {}
    for name in ("echo", "slow"):
        requests[name] = work / f"{name}.request"
        requests[name].write_bytes(build_request(name, inputs).SerializeToString())
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None)) as handle:
        yield handle, requests


@pytest.fixture(scope="module", params=["py", "cc"])
def generator(request) -> tuple[str, ...]:
    if request.param == "py":
        return sys.executable, str(admission.LOADGEN)
    if not HAVE_GRPCPP:
        pytest.skip("no gRPC C++ library (pkg-config grpc++): apt-get install libgrpc++-dev")
    return (str(admission.build_loadgen_cc()),)


def _run(generator, address: str, request: Path, *flags: str) -> dict:
    done = subprocess.run([*generator, address, str(request), "--warmup", str(WARMUP), *flags],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _inferences(address: str, model: str) -> int:
    with Client(address) as client:
        response = client.stub.ModelStatistics(pb.ModelStatisticsRequest(name=model), timeout=10)
    return sum(m.inference_stats.success.count + m.inference_stats.fail.count for m in response.model_stats)


def test_closed_loop_counts_every_call_the_server_served(server, generator) -> None:
    handle, requests = server
    before = _inferences(handle.address, "echo")
    out = _run(generator, handle.address, requests["echo"], "--concurrency", "3", "--duration", "0.5")
    assert out["errors"] == {}
    assert out["sent"] == len(out["latencies_s"]) > 0
    assert _inferences(handle.address, "echo") - before == out["sent"] + WARMUP
    assert all(0 < x < out["wall_s"] for x in out["latencies_s"])
    assert out["cpu_s"] > 0


def test_open_loop_sends_its_poisson_schedule_and_files_refusals_by_status(server, generator) -> None:
    handle, requests = server
    # 50 ms of work against a 5 ms deadline: the server refuses each at its door (RESOURCE_EXHAUSTED),
    # or the deadline passes first (DEADLINE_EXCEEDED); nothing is served.
    out = _run(generator, handle.address, requests["slow"], "--rate", "200", "--duration", "1", "--timeout-ms", "5")
    assert out["latencies_s"] == []
    assert sum(out["errors"].values()) == out["sent"]
    assert 120 < out["sent"] < 280  # Poisson, 200/s for 1 s
    assert set(out["errors"]) <= {"RESOURCE_EXHAUSTED: model 'slow' would finish",
                                  "DEADLINE_EXCEEDED: Deadline Exceeded"}, out["errors"]
    assert Counter(out["errors"])["RESOURCE_EXHAUSTED: model 'slow' would finish"] > 0


@pytest.mark.skipif(not HAVE_GRPCPP, reason="no gRPC C++ library (pkg-config grpc++): apt-get install libgrpc++-dev")
def test_the_cc_generator_says_what_was_wrong_with_its_command_line(server) -> None:
    binary = str(admission.build_loadgen_cc())
    handle, requests = server
    for args, says in ((["only-an-address"], "expected ADDRESS and REQUEST_FILE"),
                       ([handle.address, str(requests["echo"]), "--rate", "fast"], "--rate takes a number, got fast"),
                       ([handle.address, str(requests["echo"]), "--burst", "3"], "unknown option --burst"),
                       ([handle.address, "/nonexistent.request"], "cannot read /nonexistent.request")):
        done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and says in done.stderr, (args, done.stderr)
