"""Triton's own load generator, perf_analyzer (C++), against a real bwserve.

perf_analyzer is the tool people point at a KServe v2 server first; it calls
ModelMetadata, ModelConfig, ServerMetadata and, because we advertise the
"statistics" extension, ModelStatistics around every measurement window (see
DESIGN.md). This test checks that it gets through all of that at concurrency 1
to 4, and that our statistics counted what it sent.

The binary comes from ``bash benchmarks/perf_analyzer/fetch.sh`` (CI runs it);
without it the test is skipped.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from protos import inference_pb2 as pb
from serve.client import Client
from serve.deploy import prepare
from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread
from tests.old_exporter import mnist_folder

REPO_ROOT = Path(__file__).resolve().parents[1]
PERF_ANALYZER = REPO_ROOT / ".cache" / "perf_analyzer" / "run"
MODEL = "mnist"
CONCURRENCIES = (1, 2, 3, 4)

# "Concurrency: 3, throughput: 1364.77 infer/sec, latency 5911 usec" (its summary lines)
SUMMARY = re.compile(r"^Concurrency: (\d+), throughput: ([\d.]+) infer/sec", re.MULTILINE)
# "Request count: 1291" under "Client:" and "Inference count: 1291" under "Server:"
CLIENT_COUNT = re.compile(r"^\s+Request count: (\d+)", re.MULTILINE)
SERVER_COUNT = re.compile(r"^\s+Inference count: (\d+)", re.MULTILINE)


@pytest.fixture(scope="module", params=["cntk", "made-here"])
def server(request, tmp_path_factory):
    """CNTK's MNIST (../shared, where it is beside the checkout) or the one made alike here."""
    repo = ModelRepository(tmp_path_factory.mktemp("repo"))
    prepared = prepare([mnist_folder(request.param, tmp_path_factory) / "model.onnx"], name=MODEL)
    repo.add(prepared.config, prepared.model_bytes)
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None)) as handle:
        yield handle


def _statistics(address: str) -> pb.ModelStatistics:
    with Client(address) as client:
        response = client.stub.ModelStatistics(pb.ModelStatisticsRequest(name=MODEL), timeout=10)
    (model,) = response.model_stats
    return model


@pytest.mark.skipif(not PERF_ANALYZER.exists(),
                    reason=f"no perf_analyzer at {PERF_ANALYZER}; run bash benchmarks/perf_analyzer/fetch.sh")
def test_perf_analyzer_concurrency_1_to_4(server):
    before = _statistics(server.address)
    command = [
        str(PERF_ANALYZER), "-m", MODEL, "-i", "grpc", "-u", server.address,
        "--concurrency-range", f"{CONCURRENCIES[0]}:{CONCURRENCIES[-1]}",
        # Short windows keep the test to ~10 s. The stability check compares
        # window timings; on a shared CI machine that is noise, not a property
        # of our server, so it is set loose enough never to fail the run.
        "--measurement-interval", "500", "--stability-percentage", "1000",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"perf_analyzer exited {done.returncode}:\n{output}"

    throughput = {int(c): float(t) for c, t in SUMMARY.findall(done.stdout)}
    assert sorted(throughput) == list(CONCURRENCIES), output
    assert all(t > 0 for t in throughput.values()), output

    # Its "Server:" section comes from our ModelStatistics: one per concurrency,
    # each with requests in it (it diffs our counters around every window).
    client_counts = [int(n) for n in CLIENT_COUNT.findall(done.stdout)]
    server_counts = [int(n) for n in SERVER_COUNT.findall(done.stdout)]
    assert len(client_counts) == len(server_counts) == len(CONCURRENCIES), output
    assert all(n > 0 for n in server_counts), output

    # Our counters saw at least every request it reported (it also sends some
    # outside the reported windows), and nothing failed on the way.
    after = _statistics(server.address)
    counted = after.inference_count - before.inference_count
    assert counted >= sum(client_counts), (counted, client_counts)
    assert after.inference_stats.fail.count == before.inference_stats.fail.count
