"""/metrics as Prometheus reads it: no sample with an empty label, no series that cannot count."""
from __future__ import annotations

import urllib.request

import pytest
import tritonclient.grpc as grpcclient
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.utils import InferenceServerException

from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread
from tests.metrics.conftest import add, digits_input


def _text(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def _no_model_requests(text: str) -> dict[str, float]:
    """bwserve_requests_total samples without a model label, by code."""
    return {s.labels["code"]: s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "bwserve_requests_total" and "model" not in s.labels}


def test_requests_that_name_no_model_are_counted_without_empty_labels(tmp_path, digits_model) -> None:
    repo = ModelRepository(tmp_path / "repo")
    add(repo, digits_model, "digits")
    with ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=0)) as handle:
        port = handle.server.metrics_port
        before = _text(port)
        # Only the codes a request naming no loaded model can get, at 0 before any arrives.
        assert _no_model_requests(before) == {"NOT_FOUND": 0.0, "UNAVAILABLE": 0.0}
        with grpcclient.InferenceServerClient(handle.address) as client:
            client.infer("digits", [digits_input()])
            with pytest.raises(InferenceServerException, match="nowhere"):
                client.infer("nowhere", [digits_input()])
        after = _text(port)
    assert _no_model_requests(after) == {"NOT_FOUND": 1.0, "UNAVAILABLE": 0.0}
    for text in (before, after):
        empty = [line for line in text.splitlines() if not line.startswith("#") and '=""' in line]
        assert not empty, empty[:5]
