"""A run that hangs inline, on the event loop, is cancelled like a hung worker's.

The inline fast path runs short requests on the event loop's own thread, where
a hang blocks every model. The watchdog asks the backend to stop the run
(``Backend.cancel``; onnxruntime's RunOptions.terminate on the CPU), the request
fails with INTERNAL as a hung worker's does, the instance is replaced, and the
model runs nothing inline any more. A hung worker's run is cancelled too, so its
abandoned thread stops computing.
"""
from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.convert.onnx_io import finalize
from serve.admission import WINDOW
from serve.deploy import prepare
from serve.errors import InstanceHung
from serve.repository import ModelRepository
from serve.scheduler import INLINE_MAX_S, ModelScheduler
from serve.server import ServerConfig, ServerThread
from tests.scheduler.test_watchdog import HANG_TIMEOUT_S, MaybeHang

# x[0, 0] iterations of v = tanh(v @ W): zero for the warm-up's zeros (a run of
# microseconds, inlined); HANG_TRIPS take half a minute or more on one core, until cancelled.
HANG_TRIPS = 1e7
SERVER_HANG_TIMEOUT_S = 1.0  # the real server's limit: no good request on a busy machine comes near it


class InlineMaybeHang(MaybeHang):
    """MaybeHang that may run inline and whose ``cancel`` ends the hang; records its threads."""

    inline_safe = True

    def __init__(self, release: threading.Event, instance: int = 0) -> None:
        super().__init__(release, instance)
        self.threads: list[int] = []
        self.cancelled = False

    def run(self, inputs):
        self.threads.append(threading.get_ident())
        return super().run(inputs)

    def cancel(self) -> None:
        self.cancelled = True
        self.release.set()


def test_inline_hang_is_cancelled_and_the_model_leaves_the_loop() -> None:
    release = threading.Event()
    spawned: list[InlineMaybeHang] = []

    def spawn(device: int, slot: int) -> InlineMaybeHang:
        spawned.append(InlineMaybeHang(release, slot))
        return spawned[-1]

    original = InlineMaybeHang(release)
    scheduler = ModelScheduler("m", [original], max_queue_size=4, spawn=spawn, hang_timeout_s=HANG_TIMEOUT_S)
    scheduler.record_compute(0, INLINE_MAX_S / 10)

    async def main():
        short = await scheduler.run({"x": np.array([1.0])})
        # Blocks this loop until the watchdog cancels it; without the watchdog, 30 s and a result.
        with pytest.raises(InstanceHung, match="on the event loop, over the 0.3 s limit"):
            await scheduler.run({"x": np.array([-1.0])})
        while not spawned or scheduler.busy:  # the replacement is being loaded
            await asyncio.sleep(0.01)
        after = await scheduler.run({"x": np.array([2.0])})
        return short, after, threading.get_ident()

    try:
        short, after, loop_thread = asyncio.run(main())
    finally:
        release.set()
        assert scheduler.close(timeout=10)
    assert float(short.outputs["y"][0]) == 2.0 and float(after.outputs["y"][0]) == 3.0
    assert original.threads == [loop_thread, loop_thread]  # both ran inline
    assert original.cancelled and original.closed  # the loop's thread closed it once the run stopped
    assert spawned[0].threads and loop_thread not in spawned[0].threads  # no longer inline


def _loop_model() -> onnx.ModelProto:
    """x [1, 8] -> y [1, 8]: int(x[0, 0]) iterations of v = tanh(v @ W), from v = x."""
    weight = (np.random.default_rng(0).standard_normal((8, 8)) * 0.3).astype(np.float32)
    tensor = lambda name, t, shape: helper.make_tensor_value_info(name, t, shape)  # noqa: E731
    body = helper.make_graph(
        [helper.make_node("MatMul", ["v_in", "w"], ["product"]), helper.make_node("Tanh", ["product"], ["v_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
        [tensor("i", TensorProto.INT64, []), tensor("cond_in", TensorProto.BOOL, []),
         tensor("v_in", TensorProto.FLOAT, [1, 8])],
        [tensor("cond_out", TensorProto.BOOL, []), tensor("v_out", TensorProto.FLOAT, [1, 8])])
    constants = {"w": weight, "starts": np.array([0, 0]), "ends": np.array([1, 1]), "axes": np.array([0, 1]),
                 "scalar": np.array([], np.int64)}
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["first"]),
         helper.make_node("Cast", ["first"], ["first_int"], to=TensorProto.INT64),
         helper.make_node("Reshape", ["first_int", "scalar"], ["trips"]),
         helper.make_node("Loop", ["trips", "", "x"], ["y"], body=body)], "loop",
        [tensor("x", TensorProto.FLOAT, [1, 8])], [tensor("y", TensorProto.FLOAT, [1, 8])],
        [numpy_helper.from_array(value, name) for name, value in constants.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    onnx.checker.check_model(model)
    return finalize(model)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """"inline": one instance, runs inline; "workers": two instances, which never do."""
    root = tmp_path_factory.mktemp("repo")
    source = root / "loop.onnx"
    onnx.save(_loop_model(), source)
    repo = ModelRepository(root)
    for name, instances in (("inline", 1), ("workers", 2)):
        prepared = prepare([source], name=name, instances=instances)
        repo.add(prepared.config.replace(hang_timeout_s=SERVER_HANG_TIMEOUT_S), prepared.model_bytes)
    with ServerThread(ServerConfig(repo=root, port=0, metrics_port=None)) as handle:
        handle.model_file = root / "inline" / "1" / "model.onnx"
        yield handle


def _infer(client, name: str, trips: float):
    import tritonclient.grpc as grpcclient

    x = np.full((1, 8), 0.5, np.float32)
    x[0, 0] = trips
    feed = grpcclient.InferInput("x", [1, 8], "FP32")
    feed.set_data_from_numpy(x)
    return x, client.infer(name, [feed], client_timeout=120)


@pytest.mark.parametrize("name", ["inline", "workers"])
def test_a_real_onnxruntime_run_that_hangs_is_terminated(server, name: str) -> None:
    import onnxruntime as ort
    import tritonclient.grpc as grpcclient

    scheduler = server.server.registry.get(name).scheduler
    originals = list(scheduler.instances)
    if name == "inline":
        for _ in range(WINDOW):  # short enough to inline, whatever this machine's warm-up measured
            scheduler.record_compute(0, INLINE_MAX_S / 10)
    reference = ort.InferenceSession(str(server.model_file), providers=["CPUExecutionProvider"])
    with grpcclient.InferenceServerClient(server.address) as client:
        x, result = _infer(client, name, 3)
        np.testing.assert_allclose(result.as_numpy("y"), reference.run(["y"], {"x": x})[0], rtol=1e-5)
        with pytest.raises(grpcclient.InferenceServerException) as info:
            _infer(client, name, HANG_TRIPS)
        assert info.value.status() == "StatusCode.INTERNAL"
        assert f"over the {SERVER_HANG_TIMEOUT_S:g} s limit" in info.value.message()
        assert ("on the event loop" in info.value.message()) == (name == "inline")
        deadline = time.monotonic() + 120
        while scheduler.busy or scheduler.instances == originals:  # the replacement is being loaded
            assert time.monotonic() < deadline, "the hung instance was never replaced"
            time.sleep(0.01)
        (hung,) = [b for b in originals if b not in scheduler.instances]
        while hung.session is not None:  # closed once its cancelled run returned
            assert time.monotonic() < deadline, "the hung run never stopped"
            time.sleep(0.01)
        for trips in (0, 5):
            x, result = _infer(client, name, trips)
            np.testing.assert_allclose(result.as_numpy("y"), reference.run(["y"], {"x": x})[0], rtol=1e-5)
        assert client.is_server_live()
