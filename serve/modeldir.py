"""KServe's model layout: ``serve start --model-dir /mnt/models --model-name NAME``.

KServe's storage initializer downloads an InferenceService's ``storageUri`` into
``/mnt/models`` and the ServingRuntime passes the InferenceService's name as
``{{.Name}}``. That directory holds either

- a bwserve repository (``<dir>/<name>/<version>/{model.onnx,config.json}``): it is
  served in place and never written (the mount is read-only), or
- one model in any form ``serve deploy`` takes: an ``.onnx``/``.pb``/``.pt``/... file, a
  Caffe prototxt + caffemodel pair, a SavedModel, or a folder holding one of those. It
  is converted and written at start into a writable repository under NAME: ``--repo``
  if given, else a fresh temporary directory that the caller removes at exit.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from serve.errors import InvalidModel, ModelNotFound
from serve.repository import ModelRepository, check_name


@dataclass(frozen=True)
class ServedDir:
    repo: Path  # the repository to serve
    model: str  # the one model to load from it
    temporary: bool  # repo is a temp dir this process made (remove at exit)


def model_sources(model_dir: Path) -> list[Path]:
    """The file(s) or folder that make up the one model in ``model_dir``."""
    from models.convert import ConversionError, detect_framework

    try:
        detect_framework(model_dir)  # a SavedModel, a Caffe pair, or exactly one .onnx
        return [model_dir]
    except ConversionError:
        pass
    # Hidden entries are not the model: Kubernetes volumes keep "..data" links,
    # downloaders leave ".partial" files.
    entries = sorted(p for p in model_dir.iterdir() if not p.name.startswith("."))
    if len(entries) == 1:
        return model_sources(entries[0]) if entries[0].is_dir() else entries
    listing = ", ".join(p.name for p in entries) or "nothing"
    raise InvalidModel(
        f"{model_dir} holds {listing}: expected a bwserve repository or one model "
        "(a file, a prototxt + caffemodel pair, or a SavedModel)")


def serve_model_dir(model_dir: Path, name: str, repo: Path | None = None, *, backend: str = "cpu",
                    precision: str = "fp32", backend_options: dict[str, str] | None = None) -> ServedDir:
    """Decide what to serve for ``--model-dir``/``--model-name``; deploy a model file if needed."""
    check_name(name)
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelNotFound(f"--model-dir {model_dir}: no such directory")
    in_place = ModelRepository(model_dir)
    if in_place.models():
        if name not in in_place.models():
            raise ModelNotFound(f"repository {model_dir} has no model '{name}' "
                                f"(it has {', '.join(in_place.models())})")
        return ServedDir(model_dir, name, temporary=False)

    from serve.deploy import prepare

    sources = model_sources(model_dir)
    # No trial load: the server loads it right after, and a failure there is logged
    # and keeps health "" NOT_SERVING; a trial here would double the start time.
    prepared = prepare(sources, name=name, backend=backend, precision=precision,
                       backend_options=backend_options, trial_load=False)
    temporary = repo is None
    target = Path(tempfile.mkdtemp(prefix="bwserve-repo-")) if temporary else Path(repo)
    try:
        repository = ModelRepository(target)
        if name in repository.models():
            repository.remove(name)  # a restart with a kept --repo: serve this file, not old versions
        repository.add(prepared.config, prepared.model_bytes)
    except BaseException:
        if temporary:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return ServedDir(target, name, temporary=temporary)
