"""Shared pieces of the metrics tests: test backends, model repositories, scraping."""
from __future__ import annotations

import urllib.request
from collections import defaultdict

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import backends
from serve.deploy import prepare
from serve.repository import ModelRepository
from tests.server.conftest import digits_model, digits_sample, two_output_model  # noqa: F401 (fixture)

TEST_BACKENDS = {
    "fake_fpga": "tests.metrics.backends:FakeFpgaBackend",
    "gated": "tests.metrics.backends:GatedBackend",
}


@pytest.fixture(scope="session", autouse=True)
def test_backends():
    """Register the test-only backends (in this process: the servers here are in-process)."""
    backends.BACKENDS.update(TEST_BACKENDS)
    yield
    for name in TEST_BACKENDS:
        backends.BACKENDS.pop(name, None)


def add(repo: ModelRepository, model, name: str, backend: str = "cpu",
        backend_options: dict[str, str] | None = None, **config: object) -> None:
    """Add a model version with config fields `prepare` does not take (max_queue_size, ...)."""
    path = repo.root / f".src-{name}.onnx"
    repo.root.mkdir(parents=True, exist_ok=True)
    import onnx

    onnx.save(model, path)
    prepared = prepare([path], name=name, backend=backend, backend_options=backend_options)
    repo.add(prepared.config.replace(**config), prepared.model_bytes)


def scrape(port: int) -> dict[str, dict[tuple, float]]:
    """GET /metrics: {sample name: {sorted label items: value}}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples: dict[str, dict[tuple, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            # An empty label is an absent label in PromQL; drop it here too.
            samples[s.name][tuple(sorted((k, v) for k, v in s.labels.items() if v))] = s.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    """One sample's value; labels not given must be absent (or empty)."""
    return samples[name][tuple(sorted(labels.items()))]


def digits_input(valid: bool = True):
    """A tritonclient input for the digits model; invalid: the wrong shape."""
    import tritonclient.grpc as grpcclient

    x, _ = digits_sample(0)
    if not valid:
        x = np.concatenate([x, x], axis=1)
    inp = grpcclient.InferInput("pixels", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return inp


def pair_inputs():
    """Inputs of ``two_output_model`` (a, b: FP32 [1, 4])."""
    import tritonclient.grpc as grpcclient

    inputs = []
    for name in ("a", "b"):
        inp = grpcclient.InferInput(name, [1, 4], "FP32")
        inp.set_data_from_numpy(np.ones((1, 4), np.float32))
        inputs.append(inp)
    return inputs
