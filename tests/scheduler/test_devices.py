"""A model on several devices: each request goes where it is predicted to finish first."""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from serve.config import ModelConfig
from tests.scheduler.gates import Rig, tag


def test_requests_go_to_the_device_predicted_to_finish_first() -> None:
    rig = Rig(devices=("slow", "fast"))
    rig.scheduler.record_compute(0, 10.0)  # seconds; the few ms the test takes never matter
    rig.scheduler.record_compute(1, 4.0)
    try:
        async def main():
            s = rig.scheduler
            # 0: both idle, fast finishes at 4 < 10.  1: fast busy, 4 + 4 = 8 < 10: queue there.
            # 2: fast would be 4 + 4 + 4 = 12 > 10: the idle slow one.  3: slow busy (10 + 10),
            # fast 4 + 2 * 4 + 4 = 16: fast again.
            first = s.submit(tag(0))
            await rig.started(rig.groups[1][0])
            rest = [s.submit(tag(1))]
            rest.append(s.submit(tag(2)))
            await rig.started(rig.groups[0][0])
            rest.append(s.submit(tag(3)))
            assert [d.queue_depth for d in s.pools] == [0, 2]
            rig.gate.set()
            return await asyncio.gather(first, *rest)

        results = asyncio.run(main())
    finally:
        rig.close()
    assert [r.device for r in results] == ["fast", "fast", "slow", "fast"]


def test_with_nothing_measured_the_first_device_is_chosen() -> None:
    rig = Rig(devices=("first", "second"))
    try:
        async def main():
            rig.gate.set()
            return await rig.scheduler.submit(tag(0))

        assert asyncio.run(main()).device == "first"
    finally:
        rig.close()


def test_config_keeps_backend_and_adds_devices(tmp_path: Path) -> None:
    single = ModelConfig(name="m", backend="null")
    assert single.backends == ("null",)
    both = ModelConfig(name="m", backend="cpu", devices=("cpu", "null"))
    path = tmp_path / "config.json"
    path.write_text(both.dumps())
    assert ModelConfig.read(path) == both and ModelConfig.read(path).backends == ("cpu", "null")
    with pytest.raises(ValueError, match="start with backend"):
        ModelConfig(name="m", backend="null", devices=("cpu", "null"))
    with pytest.raises(ValueError, match="distinct"):
        ModelConfig(name="m", backend="cpu", devices=("cpu", "cpu"))


def test_deploy_on_cpu_and_null_serves_from_the_faster_cpu(tmp_path: Path, digits_model) -> None:
    """End to end: `serve deploy --backend cpu,null`, warm-up estimates steer to the CPU."""
    import tritonclient.grpc as grpcclient

    from serve.repository import ModelRepository
    from serve.server import ServerConfig, ServerThread
    from tests.server.conftest import add_model, digits_sample

    repo = ModelRepository(tmp_path / "repo")
    # The null backend sleeps 200 ms and answers zeros; the CPU answers the real digit.
    add_model(repo, digits_model, "digits", backend="cpu,null", backend_options={"sleep_ms": "200"})
    config = repo.read_config("digits", 1)
    assert config.backend == "cpu" and config.devices == ("cpu", "null")
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None)) as handle:
        model = handle.server.registry.get("digits")
        assert model.device == "cpu,null" and [d.name for d in model.scheduler.pools] == ["cpu", "null"]
        with grpcclient.InferenceServerClient(handle.address) as client:
            for i in range(5):
                x, label = digits_sample(i)
                inp = grpcclient.InferInput("pixels", [1, 64], "FP32")
                inp.set_data_from_numpy(x)
                probabilities = client.infer("digits", [inp]).as_numpy("probabilities")
                assert probabilities.argmax() == label and np.isclose(probabilities.sum(), 1, atol=1e-3)
