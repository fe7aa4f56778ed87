"""Offline checks for deploy/kserve: a minimal kustomize, and strict schema validation.

No cluster runs here, so the manifests are checked the way kubeconform checks them:
core kinds against Kubernetes' OpenAPI schemas (PyPI ``kubernetes-validate --strict``),
KServe's kinds against the ``openAPIV3Schema`` of KServe's own CRDs, made strict
(``properties`` closed unless the schema says ``x-kubernetes-preserve-unknown-fields``).

``render`` implements only what deploy/kserve uses: ``resources`` (files and folders)
and ``patches`` (a file and a target) on custom resources. For a kind it has no schema
for, kustomize applies a patch as a JSON merge patch (RFC 7386: maps merge, lists are
replaced), which is what ``merge_patch`` does; a patch on a built-in kind would need
strategic merge (lists merged by key) and is refused rather than rendered wrongly.
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[2]
KSERVE_DIR = ROOT / "deploy" / "kserve"
CRD_DIR = Path(__file__).resolve().parent / "crds"  # KServe's, Apache-2.0 (crds/README.md)
SHARED_CRD_DIR = ROOT.parent / "shared" / "kserve-crds"  # the team's copy, where it is beside the clone
KUBERNETES_VERSION = "1.30"  # the oldest Kubernetes the manifests target (grpc probes are GA from 1.27)

# Kind -> CRD file. KServe generates ClusterServingRuntime from the same ServingRuntimeSpec
# as ServingRuntime (only the scope differs), so both validate against one schema.
CRD_FILES = {
    "ServingRuntime": "serving.kserve.io_servingruntimes.yaml",
    "ClusterServingRuntime": "serving.kserve.io_servingruntimes.yaml",
    "InferenceService": "serving.kserve.io_inferenceservices.yaml",
}
KSERVE_GROUP = "serving.kserve.io"
_KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "patches"}

Doc = dict[str, Any]


def load_docs(path: Path) -> list[Doc]:
    """Every non-empty YAML document in a file."""
    with open(path) as f:
        # libyaml when there: KServe's CRDs are 40k lines, a minute for the Python loader.
        return [doc for doc in yaml.load_all(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if doc]


@functools.cache
def _crd(kind: str) -> Doc:
    return load_docs(CRD_DIR / CRD_FILES[kind])[0]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _matches(doc: Doc, target: dict[str, str]) -> bool:
    group = doc["apiVersion"].rpartition("/")[0]
    return (target.get("kind", doc["kind"]) == doc["kind"]
            and target.get("name", doc["metadata"]["name"]) == doc["metadata"]["name"]
            and target.get("group", group) == group)


def render(directory: Path) -> list[Doc]:
    """The objects ``kustomize build directory`` prints (in file order, not kustomize's)."""
    kustomization = load_docs(directory / "kustomization.yaml")[0]
    unknown = set(kustomization) - _KUSTOMIZATION_KEYS
    if unknown:
        raise NotImplementedError(f"{directory}: this renderer does not implement {sorted(unknown)}")
    docs: list[Doc] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        docs.extend(render(path) if path.is_dir() else load_docs(path))
    for patch_entry in kustomization.get("patches", []):
        patch = load_docs(directory / patch_entry["path"])[0]
        target = patch_entry["target"]
        hits = [i for i, doc in enumerate(docs) if _matches(doc, target)]
        if not hits:
            raise ValueError(f"{directory}: patch {patch_entry['path']} matches nothing")
        for i in hits:
            if "." not in docs[i]["apiVersion"].partition("/")[0]:
                raise NotImplementedError(
                    f"{directory}: patching built-in kind {docs[i]['kind']} needs strategic merge")
            docs[i] = merge_patch(docs[i], patch)
    return docs


def _close(schema: Any) -> Any:
    """Make every object schema that lists ``properties`` reject unlisted keys."""
    if isinstance(schema, list):
        return [_close(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {k: _close(v) for k, v in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        closed["additionalProperties"] = False
    return closed


@functools.cache
def crd_schema(kind: str, api_version: str) -> Doc:
    """The strict ``openAPIV3Schema`` of a KServe kind at ``api_version``."""
    crd = _crd(kind)
    group, _, version = api_version.partition("/")
    if group != crd["spec"]["group"]:
        raise jsonschema.ValidationError(f"{kind}: apiVersion group {group!r} is not {crd['spec']['group']!r}")
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version and entry.get("served", True):
            return _close(entry["schema"]["openAPIV3Schema"])
    raise jsonschema.ValidationError(f"{kind}: the CRD serves no version {version!r}")


@functools.cache
def _object_meta_validator() -> jsonschema.Validator:
    # The CRDs leave metadata as a bare object; the API server checks it as ObjectMeta.
    import kubernetes_validate.utils as kv

    schema_dir = f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict"
    definitions = kv.schema_contents(f"{schema_dir}/_definitions.json", KUBERNETES_VERSION)
    registry = Resource.from_contents(definitions) @ Registry()
    schema = {"$ref": definitions["$id"] + "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(doc: Doc) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``doc`` is valid for its kind, strictly."""
    kind = doc.get("kind")
    if kind in CRD_FILES:
        if doc["apiVersion"].partition("/")[0] != KSERVE_GROUP:
            raise jsonschema.ValidationError(f"{kind}: apiVersion {doc['apiVersion']} is not {KSERVE_GROUP}")
        jsonschema.Draft7Validator(crd_schema(kind, doc["apiVersion"])).validate(doc)
        _object_meta_validator().validate(doc["metadata"])
        return
    import kubernetes_validate.utils as kv

    kv.validate(doc, KUBERNETES_VERSION, strict=True)


def overlays() -> list[Path]:
    return sorted(p for p in (KSERVE_DIR / "overlays").iterdir() if (p / "kustomization.yaml").is_file())


def find(docs: list[Doc], kind: str) -> Doc:
    (doc,) = [d for d in docs if d["kind"] == kind]
    return doc
