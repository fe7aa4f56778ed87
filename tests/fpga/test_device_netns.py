"""Devices as processes on hosts of their own: network namespaces on a bridge (issue 18).

Three device processes, each in its own namespace (d0, d1, d2), a ``serve start`` in
another (srv) with ``--option device_addrs`` naming them, and the client beside the
server: every register and request crosses the namespaces' bridge. Answers equal the
in-process program's bit for bit; a device killed with SIGKILL and started again at its
address (what Kubernetes does for a pod of a StatefulSet) costs UNAVAILABLE, never a
wrong answer, and serving recovers with no reload.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest

from tests.fpga.conftest import fpga
from tests.fpga.test_device_procs import _split_options, start_device
from tests.fpga.test_devices import _mlp
from tests.kserve.proc import ROOT, start_serve, stop
from tests.replicas.netns import Lab, lab_of

DEVICES = ("d0", "d1", "d2")
PORT = 7000


@pytest.fixture(scope="module")
def lab():
    with lab_of([*DEVICES, "srv"], prefix=f"bwd{os.getpid() % 100000}") as lab:
        yield lab


def _client(lab: Lab, address: str, inputs_path) -> list[dict]:
    out = subprocess.run([*lab.exec_prefix("srv"), sys.executable, "-m", "tests.fpga.netns_client", address, "split",
                          str(inputs_path)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_devices_in_other_namespaces_serve_bit_for_bit_and_survive_a_kill(lab, tmp_path, rng):
    model = _mlp()
    options = _split_options(model)
    reference = fpga(model, **options)
    assert reference.cost.devices == len(DEVICES)
    inputs = rng.standard_normal((6, 64)).astype(np.float32)
    np.save(tmp_path / "inputs.npy", inputs)
    wanted = [reference.run({"input": x[None]})["logits"].ravel() for x in inputs]
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    onnx.save(model, model_dir / "model.onnx")
    addrs = {d: f"{lab.hosts[d]}:{PORT}" for d in DEVICES}
    devices = {d: start_device(addrs[d], tuple(lab.exec_prefix(d)))[0] for d in DEVICES}
    server = None
    try:
        opts = [a for k, v in {**options, "device_addrs": ",".join(addrs.values())}.items()
                for a in ("--option", f"{k}={v}")]
        server, port, _ = start_serve(["--model-dir", str(model_dir), "--model-name", "split", "--repo",
                                       str(tmp_path / "repo"), "--backend", "fpga", *opts, "--host", lab.hosts["srv"],
                                       "--port", "8001", "--metrics-port", "-1"], prefix=lab.exec_prefix("srv"))
        address = f"{lab.hosts['srv']}:{port}"

        def right(line, i) -> bool:
            return line["code"] == "OK" and np.array_equal(np.float32(line["logits"]), wanted[i])

        assert all(right(line, i) for i, line in enumerate(_client(lab, address, tmp_path / "inputs.npy")))
        devices["d1"].send_signal(signal.SIGKILL)
        devices["d1"].wait()
        after = _client(lab, address, tmp_path / "inputs.npy")
        assert all(line["code"] == "StatusCode.UNAVAILABLE" and f"({addrs['d1']})" in line["message"]
                   for line in after), after
        devices["d1"] = start_device(addrs["d1"], tuple(lab.exec_prefix("d1")))[0]
        deadline = time.monotonic() + 60
        while True:
            answers = _client(lab, address, tmp_path / "inputs.npy")
            assert all(right(line, i) or line["code"] == "StatusCode.UNAVAILABLE" for i, line in enumerate(answers))
            if all(right(line, i) for i, line in enumerate(answers)):
                break
            assert time.monotonic() < deadline, answers
    finally:
        if server is not None:
            stop(server)
        for proc in devices.values():
            stop(proc)
