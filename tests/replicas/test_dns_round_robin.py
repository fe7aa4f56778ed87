"""Client-side balancing: gRPC's DNS resolver + round_robin over a name listing both replicas.

The stand-in for a Kubernetes headless Service is a tiny DNS responder on the edge
host; the client uses the shipped channel options (serve/client.py: round_robin,
retry on UNAVAILABLE) with client-side health checking. Same scenario as behind Envoy:
spread, `kill -9`, rejoin, SIGTERM, with zero client-visible errors.
"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.kserve.proc import ROOT, stop
from tests.replicas.conftest import assert_all_on, assert_both_serve, spread_then_kill9

pytest.importorskip("dnslib", reason="needs PyPI dnslib")

NAME = "digits-grpc.bw.test"


@pytest.fixture()
def dns_target(lab, replicas):
    edge = lab.hosts["edge"]
    args = [a for h in ("r1", "r2") for a in ("--a", lab.hosts[h])]
    proc = subprocess.Popen([*lab.exec_prefix("edge"), sys.executable, "-m", "tests.replicas.dns", "--listen", edge,
                             "--name", NAME, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    try:
        assert "dns ready" in proc.stdout.readline()
        # dns://SERVER/NAME:PORT: the resolver asks our responder, not the machine's.
        yield f"dns://{edge}:53/{NAME}:8001"
    finally:
        stop(proc)


def test_round_robin_over_dns_spreads_survives_kill_and_drain_and_rejoins(replicas, driver, dns_target) -> None:
    load = dict(cmd="load", target=dns_target, concurrency=8, health_check=True)
    spread_then_kill9(driver, replicas, load)

    replicas.start("r1")
    for _ in range(10):  # the same channel reconnects to it, with backoff (bounded here)
        result = driver.call(**load, seconds=2)
        if result["served"][replicas.address("r1")]:
            break
    assert_both_serve(result, replicas)

    driver.send(**load, seconds=5)
    time.sleep(1.5)
    draining = replicas.terminate("r2")
    during = driver.recv()
    assert during["errors"] == {} and during["ok"] > 0, during
    assert draining.wait(timeout=30) == 0
    assert_all_on(driver.call(**load, seconds=2), replicas, "r1")
