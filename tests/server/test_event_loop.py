"""The server's event loop: uvloop by default, the standard library's on request, a clear error otherwise."""
from __future__ import annotations

import asyncio
import sys

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import uvloop

from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread, loop_factory
from tests.server.conftest import add_model, digits_sample


def test_loop_factory_makes_the_loop_named() -> None:
    for name, kind in (("uvloop", uvloop.Loop), ("asyncio", asyncio.SelectorEventLoop)):
        loop = loop_factory(name)()
        try:
            assert isinstance(loop, kind), (name, type(loop))
        finally:
            loop.close()


def test_unknown_or_missing_loops_are_refused_with_what_to_do(monkeypatch) -> None:
    with pytest.raises(ValueError, match="expected uvloop or asyncio"):
        loop_factory("trio")
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if it were not installed
    with pytest.raises(ValueError, match="pip install uvloop.*--event-loop asyncio"):
        loop_factory("uvloop")


@pytest.mark.parametrize("name, kind", [("uvloop", uvloop.Loop), ("asyncio", asyncio.SelectorEventLoop)])
def test_a_server_on_each_loop_answers_and_refuses_bad_input(tmp_path, digits_model, name, kind) -> None:
    repo = ModelRepository(tmp_path / "repo")
    add_model(repo, digits_model, "digits")
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=None, event_loop=name)) as handle:
        assert isinstance(handle.call(_running_loop()), kind)
        with grpcclient.InferenceServerClient(handle.address) as client:
            x, label = digits_sample(3)
            good = grpcclient.InferInput("pixels", [1, 64], "FP32")
            good.set_data_from_numpy(x)
            assert client.infer("digits", [good]).as_numpy("probabilities").argmax() == label
            bad = grpcclient.InferInput("pixels", [1, 63], "FP32")
            bad.set_data_from_numpy(np.zeros((1, 63), np.float32))
            with pytest.raises(grpcclient.InferenceServerException) as info:
                client.infer("digits", [bad])
            assert info.value.status() == "StatusCode.INVALID_ARGUMENT"


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()
