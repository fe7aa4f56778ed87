"""deploy/kserve is valid for Kubernetes and KServe, and agrees with what bwserve does.

Schema checks catch typos and wrong types; the agreement checks catch manifests that
are valid but wrong for bwserve (a port the server does not bind, a probe on a health
name it never reports, a grace period shorter than its drain).
"""
from __future__ import annotations

import copy
import shutil
import subprocess

import pytest

for _module, _package in (("yaml", "pyyaml"), ("jsonschema", "jsonschema"),
                          ("kubernetes_validate", "kubernetes-validate")):
    pytest.importorskip(_module, reason=f"needs PyPI {_package} (manifest validation)")

import jsonschema  # noqa: E402
import yaml  # noqa: E402

from serve.cli import build_parser  # noqa: E402
from serve.health import LIVENESS_SERVICE  # noqa: E402
from tests.kserve.manifests import (CRD_DIR, CRD_FILES, KSERVE_DIR, SHARED_CRD_DIR, find, load_docs,  # noqa: E402
                                    merge_patch, overlays, render, validate)

TARGETS = [KSERVE_DIR / "base", *overlays()]


def test_there_are_cpu_fpga_and_gpu_overlays() -> None:
    assert [p.name for p in overlays()] == ["cpu", "fpga", "gpu"]


@pytest.mark.parametrize("target", TARGETS, ids=lambda p: p.name)
def test_rendered_objects_are_valid(target) -> None:
    docs = render(target)
    assert {d["kind"] for d in docs} == {"ClusterServingRuntime", "InferenceService", "Service"}
    for doc in docs:
        validate(doc)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl to compare with")
@pytest.mark.parametrize("target", TARGETS, ids=lambda p: p.name)
def test_the_minimal_renderer_agrees_with_kustomize(target) -> None:
    out = subprocess.run(["kubectl", "kustomize", str(target)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(render(target), key=key) == sorted((d for d in yaml.safe_load_all(out) if d), key=key)


def _base(kind: str) -> dict:
    return copy.deepcopy(find(render(KSERVE_DIR / "base"), kind))


@pytest.mark.parametrize("kind, path, value", [
    ("InferenceService", ("spec", "predictor", "terminationGracePeriodSeconds"), "30"),  # wrong type
    ("InferenceService", ("spec", "predictor", "modle"), {"runtime": "bwserve"}),  # unknown field
    ("InferenceService", ("metadata", "lables"), {"a": "b"}),  # unknown metadata field
    ("ClusterServingRuntime", ("spec", "protocolVersions"), "grpc-v2"),  # a string, not a list
    ("ClusterServingRuntime", ("spec", "containers", 0, "readinessProbe", "grpc", "port"), "h2c"),
    ("ClusterServingRuntime", ("spec", "containers", 0, "imagePullPolice"), "Always"),
    ("Service", ("spec", "clusterIp"), "None"),  # unknown (the field is clusterIP)
    ("Service", ("spec", "ports", 0, "port"), "8001"),
])
def test_a_broken_manifest_fails(kind, path, value) -> None:
    doc = _base(kind)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


def test_a_wrong_api_version_fails() -> None:
    doc = _base("InferenceService")
    doc["apiVersion"] = "serving.kserve.io/v1"
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


def test_merge_patch_replaces_lists_and_merges_maps() -> None:
    target = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge_patch(target, {"a": {"c": [3]}, "d": None}) == {"a": {"b": 1, "c": [3]}}


def _runtime_container() -> dict:
    (container,) = _base("ClusterServingRuntime")["spec"]["containers"]
    return container


def _start_args(isvc_name: str, extra: list[str] = ()):
    # KServe substitutes {{.Name}} and appends the InferenceService's args to the runtime's.
    args = [a.replace("{{.Name}}", isvc_name) for a in _runtime_container()["args"]] + list(extra)
    return build_parser().parse_args(args)


def test_runtime_is_a_grpc_v2_kserve_runtime_for_onnx_and_the_imported_formats() -> None:
    spec = _base("ClusterServingRuntime")["spec"]
    assert spec["protocolVersions"] == ["grpc-v2"]
    assert {"onnx", "caffe", "tensorflow", "pytorch"} <= {f["name"] for f in spec["supportedModelFormats"]}
    assert [c["name"] for c in spec["containers"]] == ["kserve-container"]


def test_runtime_args_are_what_serve_start_accepts_for_kserve_layout() -> None:
    args = _start_args("digits")
    assert args.command == "start" and str(args.model_dir) == "/mnt/models" and args.model_name == "digits"
    assert args.host == "0.0.0.0"


def test_ports_probes_and_metrics_match_the_server() -> None:
    container = _runtime_container()
    args = _start_args("digits")
    (port,) = container["ports"]
    assert port["name"] in ("h2c", "grpc") and port["containerPort"] == args.port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == args.port
    assert container["readinessProbe"]["grpc"]["service"] == ""  # SERVING only when the model is ready
    assert container["livenessProbe"]["grpc"]["service"] == LIVENESS_SERVICE
    annotations = _base("ClusterServingRuntime")["spec"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == args.metrics_port


@pytest.mark.parametrize("target", TARGETS, ids=lambda p: p.name)
def test_termination_grace_covers_prestop_and_drain(target) -> None:
    docs = render(target)
    predictor = find(docs, "InferenceService")["spec"]["predictor"]
    command = _runtime_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    args = _start_args("digits", predictor["model"].get("args", []))
    # the drain delay, server.stop(grace) for running requests, then registry.close(grace)
    assert args.drain_delay_s > 0
    assert predictor["terminationGracePeriodSeconds"] >= float(command[1]) + args.drain_delay_s + 2 * args.grace_s


@pytest.mark.parametrize("target", overlays(), ids=lambda p: p.name)
def test_each_overlay_selects_its_backend(target) -> None:
    predictor = find(render(target), "InferenceService")["spec"]["predictor"]
    assert _start_args("digits", predictor["model"]["args"]).backend == target.name
    limits = predictor["model"]["resources"]["limits"]
    assert ("nvidia.com/gpu" in limits) == (target.name == "gpu")


def test_inference_service_is_standard_mode_on_this_runtime() -> None:
    isvc = _base("InferenceService")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    model = isvc["spec"]["predictor"]["model"]
    runtime = _base("ClusterServingRuntime")
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}


def test_headless_service_selects_the_predictor_pods_on_the_grpc_port() -> None:
    service, isvc = _base("Service"), _base("InferenceService")
    assert service["spec"]["clusterIP"] == "None"  # DNS lists every pod: per-request balancing
    # The labels KServe puts on an InferenceService's predictor pods.
    assert service["spec"]["selector"] == {"serving.kserve.io/inferenceservice": isvc["metadata"]["name"],
                                           "component": "predictor"}
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == _runtime_container()["ports"][0]["containerPort"]


def test_every_yaml_file_parses() -> None:
    for path in KSERVE_DIR.rglob("*.yaml"):
        assert load_docs(path), path


@pytest.mark.skipif(not SHARED_CRD_DIR.is_dir(), reason="no ../shared/kserve-crds beside the checkout to compare with")
def test_the_shipped_crds_are_the_shared_ones() -> None:
    """tests/kserve/crds is KServe's files unmodified: byte for byte the team's copy."""
    for name in sorted(set(CRD_FILES.values())):
        assert (CRD_DIR / name).read_bytes() == (SHARED_CRD_DIR / name).read_bytes(), name
