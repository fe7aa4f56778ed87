"""Start each server under test as its own process and wait until it answers.

Every server runs outside the benchmark's process so that it never shares the
client's GIL. "Ready" means one real ModelInfer with the benchmark's own request
succeeded, the same test for every server.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from protos import inference_pb2 as pb
from serve.client import Client

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
KSERVE_PYTHON = ROOT / ".cache" / "kserve-venv" / "bin" / "python"


def free_port() -> int:
    """A loopback port nobody listens on now (the server binds it a moment later)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Running:
    name: str
    address: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start(name: str, command: list[str], port: int, request: pb.ModelInferRequest, log: Path,
          timeout: float = 90.0, attempt_timeout: float = 5.0) -> Running:
    """Run ``command`` (which serves gRPC on ``port``) and wait for one good ModelInfer.

    Each try may take ``attempt_timeout`` s (a server under valgrind needs far longer).
    """
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    running = Running(name, f"127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + timeout
    with Client(running.address) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; log {log}:\n"
                                   + log.read_text(errors="replace")[-3000:])
            try:
                client.stub.ModelInfer(request, timeout=attempt_timeout)
                return running
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    running.stop()
                    raise RuntimeError(f"{name} not ready: {exc.code().name} {exc.details()}; "
                                       f"log {log}") from exc
            time.sleep(0.2)


def bwserve(repo: Path, model: str, port: int) -> list[str]:
    """Our server, exactly as users start it."""
    return [str(Path(sys.executable).parent / "serve"), "start", "--repo", str(repo), "--model", model,
            "--port", str(port), "--metrics-port", "-1"]


def obvious(model_path: Path, model: str, port: int) -> list[str]:
    return [sys.executable, str(HERE / "obvious_grpc.py"), str(model_path), "--name", model,
            "--port", str(port)]


def empty(port: int) -> list[str]:
    return [sys.executable, str(HERE / "empty_grpc.py"), "--port", str(port)]


def kserve(model_path: Path, model: str, port: int) -> list[str]:
    """KServe's ModelServer in its own venv (benchmarks/baselines/kserve_setup.sh)."""
    return [str(KSERVE_PYTHON), str(HERE / "kserve_onnx.py"), str(model_path), "--name", model,
            "--port", str(port), "--http-port", str(free_port())]
