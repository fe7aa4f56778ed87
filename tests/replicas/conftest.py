"""Fixtures for the multi-host tests: the namespaces, bwserve replicas, the client driver.

Hosts (10.77.0.0/24, inside namespaces made here): r1 and r2 run a bwserve replica
each, edge runs Envoy or the DNS responder, client runs the load. Every process
started here is killed and every namespace deleted at the end, even on failure.
"""
from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest

from tests.kserve.proc import ROOT, start_serve, stop
from tests.replicas.netns import Lab, lab_of
from tests.server.conftest import two_output_model

HOSTS = ["r1", "r2", "edge", "client"]
REPLICAS = ("r1", "r2")
PORT = 8001


@pytest.fixture(scope="module")
def lab():
    with lab_of(HOSTS) as lab:
        yield lab


class Replicas:
    """One `serve start --model-dir` per replica host, killed or stopped on demand."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab, self.workdir = lab, workdir
        self.model_dir = workdir / "mnt-models"
        self.model_dir.mkdir()
        onnx.save(two_output_model(), self.model_dir / "model.onnx")
        self.procs: dict[str, subprocess.Popen] = {}

    def address(self, host: str) -> str:
        return f"{self.lab.hosts[host]}:{PORT}"

    def start(self, host: str) -> None:
        # The null backend sleeps 2 ms a request: a replica's own work, with no CPU
        # spent, so two replicas, Envoy and the client fit on two shared cores.
        proc, _, _ = start_serve(
            ["--model-dir", str(self.model_dir), "--model-name", "adder", "--repo", str(self.workdir / host),
             "--backend", "null", "--option", "sleep_ms=2", "--host", self.lab.hosts[host], "--port", str(PORT),
             "--metrics-port", "-1", "--grace-s", "3", "--drain-delay-s", "1"], prefix=self.lab.exec_prefix(host))
        self.procs[host] = proc

    def kill9(self, host: str) -> None:
        proc = self.procs.pop(host)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def terminate(self, host: str) -> subprocess.Popen:
        proc = self.procs.pop(host)
        proc.send_signal(signal.SIGTERM)
        return proc

    def close(self) -> None:
        for proc in self.procs.values():
            stop(proc)


@pytest.fixture()
def replicas(lab, tmp_path):
    handle = Replicas(lab, tmp_path)
    try:
        for host in REPLICAS:
            handle.start(host)
        yield handle
    finally:
        handle.close()


class Driver:
    """tests/replicas/driver.py running on the client host."""

    def __init__(self, lab: Lab, replicas: Replicas) -> None:
        args = [a for host in REPLICAS for a in ("--replica", replicas.address(host))]
        self.proc = subprocess.Popen([*lab.exec_prefix("client"), sys.executable, "-m", "tests.replicas.driver",
                                      *args], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        assert self.recv(60).get("ready")

    def send(self, **command) -> None:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def recv(self, timeout: float = 60) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, f"driver silent for {timeout} s"
        line = self.proc.stdout.readline()
        assert line, f"driver exited ({self.proc.poll()})"
        return json.loads(line)

    def call(self, **command) -> dict:
        self.send(**command)
        return self.recv()

    def close(self) -> None:
        self.proc.stdin.close()
        stop(self.proc)


@pytest.fixture()
def driver(lab, replicas):
    handle = Driver(lab, replicas)
    try:
        yield handle
    finally:
        handle.close()


def until(check, timeout: float = 30, step: float = 0.2):
    """Poll ``check()`` until it returns something truthy (bounded); return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not true within {timeout} s: {check.__doc__ or check}")


def assert_spread(result: dict, replicas: Replicas, hosts=REPLICAS) -> None:
    """No errors, and each replica served a fair share (not all on one)."""
    assert result["errors"] == {} and result["ok"] > 0, result
    served = [result["served"][replicas.address(h)] for h in hosts]
    assert all(n is not None and n >= 0.25 * sum(served) for n in served), result


def assert_both_serve(result: dict, replicas: Replicas) -> None:
    """No errors, and both replicas served some of it (a rejoined one too)."""
    assert result["errors"] == {} and result["ok"] > 0, result
    assert all(result["served"][replicas.address(h)] for h in REPLICAS), result


def assert_all_on(result: dict, replicas: Replicas, host: str) -> None:
    """No errors, and every success was served by ``host``; the other replica took none."""
    assert result["errors"] == {} and result["ok"] > 0, result
    assert result["served"][replicas.address(host)] >= result["ok"], result
    others = [result["served"][replicas.address(h)] for h in REPLICAS if h != host]
    assert all(n in (None, 0) for n in others), result


def spread_then_kill9(driver, replicas: Replicas, load: dict) -> None:
    """The shared scenario: load spreads over both replicas; kill -9 of r1 mid-load costs
    the client nothing and r2 takes all of it."""
    driver.call(**load, seconds=1)  # both connections up before the share is judged
    assert_spread(driver.call(**load, seconds=3), replicas)
    driver.send(**load, seconds=5)
    time.sleep(1.5)  # mid-load
    replicas.kill9("r1")
    during = driver.recv()
    assert during["errors"] == {} and during["ok"] > 0, during
    assert_all_on(driver.call(**load, seconds=2), replicas, "r2")

