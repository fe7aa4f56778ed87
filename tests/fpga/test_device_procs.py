"""Devices as processes (fpga options ``device_procs``, ``device_addrs``; issue 18, item 3).

Real ``python -m backends.fpga.device`` processes on loopback, real TCP between them:
their outputs equal the in-process program's over the same devices bit for bit (and
so one big device's); a device killed with SIGKILL mid-load costs its clients
UNAVAILABLE, never a wrong answer, and serving comes back with the device.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from backends.base import BackendUnavailable, DeviceUnavailable, ModelLoadFailed
from backends.fpga import isa, wire
from backends.fpga.devplan import device_program, from_wire, plans, to_wire
from tests.fpga.conftest import fpga
from tests.fpga.test_devices import MODELS, _memory, _mlp, _one_big, _words

ROOT = Path(__file__).resolve().parents[2]


def _split_options(model, mvu="tiny") -> dict[str, str]:
    """Options that pin ``model`` over the fewest devices that each hold its largest matrix."""
    big = _one_big(model, mvu)
    return {"mvu": mvu, "devices": "auto", "weight_mem": _memory(big, max(_words(big)))}


def _device_pids() -> list[int]:
    """The device processes this test process spawned (children running backends.fpga.device)."""
    me, pids = str(os.getpid()), []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == me \
                    and b"backends.fpga.device" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def start_device(listen: str = "127.0.0.1:0", prefix: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    """A device process (as a pod would run it); its process and address."""
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "backends.fpga.device", "--listen", listen], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = proc.stdout.readline()
    assert line.startswith("listening "), line
    return proc, line.split()[1]


@pytest.mark.parametrize("split", ["whole", "rows"])
@pytest.mark.parametrize("name", MODELS)
def test_outputs_through_device_processes_equal_in_process_bit_for_bit(name, split, rng):
    """Whole matrices over the fewest devices that hold them, or every large product's
    rows over two (its slices exchange their accumulator statistics and gather h)."""
    make, mvu, input_name, shape = MODELS[name]
    model = make(rng)
    options = _split_options(model, mvu) if split == "whole" else {"mvu": mvu, "devices": "2", "split": "rows",
                                                                    "weight_mem": "1MiB"}
    inproc = fpga(model, **options)
    procs = fpga(model, **options, device_procs="1")
    try:
        assert len(procs.runtime.plans) == inproc.cost.devices >= 2
        assert inproc.assignment.describe().startswith("row split") == (split == "rows")
        assert len(_device_pids()) == inproc.cost.devices
        big = _one_big(model, mvu)
        for _ in range(3):
            x = {input_name: rng.standard_normal(shape).astype(np.float32)}
            want, got = inproc.run(x), procs.run(x)
            assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) for k in want)
            assert all(np.array_equal(big.run(x)[k], got[k]) for k in want)
    finally:
        procs.close()
    assert _device_pids() == []


def test_each_device_holds_only_its_slice_and_every_register_it_reads_reaches_it(rng):
    model = MODELS["gru"][0](rng)
    backend = fpga(model, **_split_options(model, "small"))
    program, k = backend.program, backend.cost.devices
    homes = dict(zip(backend.assignment.slots, backend.assignment.homes))
    got = plans(program)
    assert [p.device for p in got] == list(range(k))
    assert sorted(i for p in got for i in p.body) == list(range(len(program.body)))  # each instruction once
    for p in got:
        assert all(homes[s] == p.device for s in p.slots)  # its own matrices, no one else's
        received = {r for need in p.receive for r in need}
        sent_here = {r for q in got for sends in q.send for r, to in sends if p.device in to}
        assert received == sent_here and received  # a GRU's state crosses both ways every step


def test_frames_round_trip_every_dtype_and_refuse_what_cannot_cross():
    a, b = socket.socketpair()
    with a, b:
        for dtype in wire.DTYPES:
            for shape in [(), (0,), (3, 1, 2)]:
                x = np.arange(int(np.prod(shape)), dtype=np.int64).astype(dtype).reshape(shape)
                wire.send(a, wire.Kind.TENSOR, 2**40 + 7, "reg:é", x[::-1] if x.ndim else x)
                frame = wire.recv(b)
                assert (frame.kind, frame.rid, frame.name) == (wire.Kind.TENSOR, 2**40 + 7, "reg:é")
                assert frame.array.dtype == dtype and np.array_equal(frame.array, x[::-1] if x.ndim else x)
        with pytest.raises(TypeError, match="dtype object cannot cross"):
            wire.send(a, wire.Kind.TENSOR, 1, "s", np.array(["text"], object))
        a.sendall(b"GET / HTTP/1.1\r\n\r\n".ljust(28))  # one header's worth of another protocol
        with pytest.raises(ValueError, match="not a bwserve device frame"):
            wire.recv(b)
        a.close()
        with pytest.raises(wire.Closed):
            wire.recv(b)


def test_a_device_program_crosses_as_json_and_arrays_and_only_known_classes_are_built(rng):
    backend = fpga(MODELS["gru"][0](rng), **_split_options(MODELS["gru"][0](rng), "small"))
    for plan in plans(backend.program):
        mine = device_program(backend.program, plan)
        meta, arrays = to_wire(backend.cfg, mine, plan)
        meta = json.loads(json.dumps(meta))  # as it crosses
        cfg, program, back = from_wire(meta, dict(arrays))
        assert (cfg, program.body, back) == (backend.cfg, mine.body, plan)
        assert [p.slot for p in program.prologue if isinstance(p, isa.PinWeights)] == list(plan.slots)
        assert all(np.array_equal(a.tiles.blas_operands[0], b.tiles.blas_operands[0])
                   for a, b in zip(mine.prologue, program.prologue) if isinstance(a, isa.PinWeights))
    swapped = json.loads(json.dumps(meta).replace("backends.fpga.isa:Program", "subprocess:Popen", 1))
    with pytest.raises(TypeError, match="subprocess:Popen is not a class"):
        from_wire(swapped, dict(arrays))


@pytest.mark.parametrize("addrs,why", [
    ("localhost", "'localhost' is not HOST:PORT"),
    ("127.0.0.1:99999", "is not HOST:PORT"),
    ("127.0.0.1:7000,", "'' is not HOST:PORT"),
])
def test_a_bad_device_address_is_a_load_error(addrs, why):
    with pytest.raises(ModelLoadFailed, match=rf"device_addrs=.*{why}.*expected HOST:PORT,HOST:PORT"):
        fpga(_mlp(), mvu="tiny", device_addrs=addrs)


def test_an_unreachable_device_or_the_wrong_count_is_a_clear_load_error():
    model = _mlp()
    options = _split_options(model)  # three devices
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(BackendUnavailable, match=rf"fpga device 0 \({closed}\) does not answer .*Connection "
                                                 rf"refused.*python -m backends.fpga.device --listen"):
        fpga(model, **options, device_addrs=",".join([closed] * 3))
    with pytest.raises(ModelLoadFailed, match="device_addrs lists 2 devices but devices=3; leave devices out"):
        fpga(model, **{**options, "devices": "3"}, device_addrs=f"{closed},{closed}")
    with pytest.raises(ModelLoadFailed, match=r"need \d+ bytes .* but 2 devices of \d+ bytes"):
        fpga(model, **options, device_addrs=f"{closed},{closed}")  # auto: the two listed, too few
    with pytest.raises(ModelLoadFailed, match=r"device_timeout_s='0': expected seconds > 0"):
        fpga(model, **options, device_procs="1", device_timeout_s="0")
    with pytest.raises(ModelLoadFailed, match="device processes run the golden model"):
        fpga(model, mvu="tiny", device_procs="1", fpga_sim="rtl")


def test_running_devices_at_addresses_serve_and_come_back_after_a_restart(rng):
    """device_addrs: the devices run elsewhere (here: three processes this test starts, as
    a StatefulSet would); one killed, requests fail UNAVAILABLE naming it; restarted at
    the same address (what Kubernetes does), it is reloaded and serving recovers."""
    model = _mlp()
    options = _split_options(model)
    inproc = fpga(model, **options)
    devices = [start_device() for _ in range(inproc.cost.devices)]
    backend = None
    try:
        backend = fpga(model, **options, device_addrs=",".join(a for _, a in devices))
        x = {"input": rng.standard_normal((1, 64)).astype(np.float32)}
        assert np.array_equal(backend.run(x)["logits"], inproc.run(x)["logits"])
        proc, address = devices[1]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # The host hears of it first from device 1's own connection or from a peer cut off from it.
        named = rf"fpga device 1 \({address}\) (has gone|closed its conn|is cut off).*restarted"
        with pytest.raises(DeviceUnavailable, match=named):
            backend.run(x)
        with pytest.raises(DeviceUnavailable):  # fails at once while the device is away
            backend.run(x)
        devices[1] = start_device(address)
        assert np.array_equal(_until_served(backend, x)["logits"], inproc.run(x)["logits"])
    finally:
        if backend is not None:
            backend.close()
        for proc, _ in devices:
            proc.kill()
            proc.wait()
            proc.stdout.close()


def test_a_hung_device_fails_its_request_after_the_timeout_and_is_replaced(rng):
    """SIGSTOP of a spawned device: the request fails after device_timeout_s, the device
    does not answer its ping and is replaced by a new process; serving resumes."""
    model = _mlp()
    options = _split_options(model)
    inproc = fpga(model, **options)
    backend = fpga(model, **options, device_procs="1", device_timeout_s="1")
    try:
        x = {"input": rng.standard_normal((1, 64)).astype(np.float32)}
        hung = sorted(_device_pids())[1]
        os.kill(hung, signal.SIGSTOP)
        with pytest.raises(DeviceUnavailable, match=r"did not finish the request within 1 s \(fpga option "
                                                    r"device_timeout_s\).*restarted"):
            backend.run(x)
        assert np.array_equal(_until_served(backend, x)["logits"], inproc.run(x)["logits"])
        assert hung not in _device_pids() and len(_device_pids()) == 3
    finally:
        backend.close()


def test_the_hang_watchdogs_cancel_ends_a_run_stuck_on_a_device(rng):
    """Backend.cancel from another thread (the scheduler's watchdog) cuts the links: the
    run stuck on a stopped device ends with UNAVAILABLE, not after device_timeout_s."""
    model = _mlp()
    backend = fpga(model, **_split_options(model), device_procs="1", device_timeout_s="600")
    try:
        os.kill(sorted(_device_pids())[2], signal.SIGSTOP)
        threading.Timer(0.5, backend.cancel).start()
        with pytest.raises(DeviceUnavailable, match="closed its connection") as info:
            backend.run({"input": np.zeros((1, 64), np.float32)})
        assert "within 600 s" not in str(info.value)
    finally:
        backend.close()
    assert _device_pids() == []


def _until_served(backend, x, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return backend.run(x)
        except DeviceUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_device_killed_mid_load_costs_clients_unavailable_never_a_wrong_answer(tmp_path, rng):
    """Two clients over gRPC on a model spawned over three device processes; one device
    is killed with SIGKILL while they run: each answer is the right one or UNAVAILABLE
    naming a device, and after the device's restart every request succeeds again."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from serve.deploy import prepare
    from serve.repository import ModelRepository
    from serve.server import ServerConfig, ServerThread

    model = _mlp()
    options = _split_options(model)
    path = tmp_path / "mlp.onnx"
    onnx.save(model, path)
    prepared = prepare([path], name="split", backend="fpga", backend_options={**options, "device_procs": "1"},
                       trial_load=False)
    reference = fpga(onnx.load_from_string(prepared.model_bytes), prepared.config.layer_formats, **options)
    inputs = [rng.standard_normal((1, 64)).astype(np.float32) for _ in range(8)]
    wanted = [reference.run({"input": x})["logits"] for x in inputs]
    repo = ModelRepository(tmp_path / "repo")
    repo.add(prepared.config, prepared.model_bytes)
    handle = ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=0))
    results: list[tuple[str, str]] = []  # (what, detail) per answer, in order
    stop, killed = threading.Event(), threading.Event()

    def client(seed: int) -> None:
        with grpcclient.InferenceServerClient(handle.address) as c:
            i = seed
            while not stop.is_set():
                i = (i + 1) % len(inputs)
                inp = grpcclient.InferInput("input", [1, 64], "FP32")
                inp.set_data_from_numpy(inputs[i])
                try:
                    got = c.infer("split", [inp]).as_numpy("logits")
                    results.append(("ok" if np.array_equal(got, wanted[i]) else "WRONG",
                                    "after" if killed.is_set() else "before"))
                except InferenceServerException as exc:
                    results.append((exc.status(), exc.message()))

    try:
        pids = _device_pids()
        assert len(pids) == 3
        threads = [threading.Thread(target=client, args=(s,)) for s in range(2)]
        for t in threads:
            t.start()
        _wait(lambda: len(results) >= 20)
        os.kill(sorted(pids)[1], signal.SIGKILL)
        killed.set()
        _wait(lambda: sum(1 for r in results[-10:] if r == ("ok", "after")) == 10, timeout=60)
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        stop.set()
        handle.stop()
    assert not [r for r in results if r[0] == "WRONG"]
    errors = [r for r in results if r[0] != "ok"]
    assert errors and all(code == "StatusCode.UNAVAILABLE" and "fpga device" in why and "restarted" in why
                          for code, why in errors), errors[:3]
    assert results[-1] == ("ok", "after") and len(_device_pids()) == 0  # the server's stop ended them all


def _wait(check, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not true within {timeout} s"
        time.sleep(0.05)
