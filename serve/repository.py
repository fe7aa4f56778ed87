"""The model repository on disk: ``<root>/<model>/<version>/{model.onnx,config.json}``.

A version directory is immutable once it exists. ``add`` writes the files into a
hidden temp directory beside the versions, fsyncs them and renames the directory
into place, so a crash mid-deploy leaves at most a ``.tmp-*`` directory that
``versions`` never lists: the server loads the old version or the new one, never
half of one. Temp directories carry their writer's process id and pid namespace, so
that the next ``add`` or ``remove`` in that folder, and every server start
(``tidy``), deletes those whose writer died (kill -9) and never one still being
written, here or by a writer on another host or container sharing the volume
(tests/hardening/test_deploy_kill9.py kills a real deploy).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from serve.config import CONFIG_FILE, MODEL_FILE, ModelConfig
from serve.errors import InvalidModel, ModelNotFound

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_name(name: str) -> str:
    """A model name must be a plain directory name: no paths, no '..'."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise InvalidModel(
            f"invalid model name {name!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit")
    return name


def _pid_namespace() -> str:
    """An id of this process's pid namespace on this boot of this machine.

    Pids mean something only inside one pid namespace: a repository on a shared volume
    may be written from other hosts or containers, whose writers' pids must never be
    looked up here.
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:  # no /proc: the host name is the best left
        boot, namespace = socket.gethostname(), ""
    return hashlib.sha256(f"{boot}/{namespace}".encode()).hexdigest()[:12]


_WRITER_NAMESPACE = _pid_namespace()


def _scratch(kind: str, parent: Path, label: str = "") -> Path:
    """A new hidden directory ``.<kind>-<pid>.<namespace>-<label>...`` in ``parent``, for this process to fill."""
    return Path(tempfile.mkdtemp(prefix=f".{kind}-{os.getpid()}.{_WRITER_NAMESPACE}-{label}", dir=parent))


def _writer_died(entry: Path) -> bool:
    """Whether a scratch directory's writer process is gone. Only a writer in this pid
    namespace can be checked; any other name is left alone, never guessed at."""
    parts = entry.name.split("-", 2)
    if len(parts) < 3 or parts[0] not in (".tmp", ".rm"):
        return False
    pid, _, namespace = parts[1].partition(".")
    if namespace != _WRITER_NAMESPACE or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, someone else's
        return False
    return False


def remove_stale(parent: Path) -> None:
    """Delete the scratch directories in ``parent`` left by writers that died mid-write."""
    for entry in parent.iterdir():
        if entry.name.startswith(".") and _writer_died(entry):
            shutil.rmtree(entry, ignore_errors=True)


def write_files(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write ``files`` ({path relative to ``folder``: bytes}) in order, each atomically: a
    temp file beside it, fsynced, renamed over the old one."""
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the version from a server of another user
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ModelRepository:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and _NAME.fullmatch(p.name) and self.versions(p.name))

    def versions(self, name: str) -> list[int]:
        """The model's complete versions, oldest first."""
        model_dir = self.root / check_name(name)
        if not model_dir.is_dir():
            return []
        return sorted(int(p.name) for p in model_dir.iterdir()
                      if p.name.isdigit() and (p / CONFIG_FILE).is_file() and (p / MODEL_FILE).is_file())

    def version_dir(self, name: str, version: int) -> Path:
        path = self.root / check_name(name) / str(version)
        if not (path / CONFIG_FILE).is_file():
            raise ModelNotFound(f"model '{name}' has no version {version} in {self.root}")
        return path

    def read_config(self, name: str, version: int) -> ModelConfig:
        return ModelConfig.read(self.version_dir(name, version) / CONFIG_FILE)

    def find(self, config: ModelConfig, model_bytes: bytes) -> int | None:
        """The newest version whose model and config are exactly these bytes; None if none is.

        ``serve deploy`` reuses it rather than writing a copy (rerunning a deploy would
        otherwise add an identical version each time, each one loaded)."""
        config_bytes = config.dumps().encode()
        for version in reversed(self.versions(config.name)):
            folder = self.root / config.name / str(version)
            model_file = folder / MODEL_FILE
            if (model_file.stat().st_size == len(model_bytes) and (folder / CONFIG_FILE).read_bytes() == config_bytes
                    and model_file.read_bytes() == model_bytes):
                return version
        return None

    def add(self, config: ModelConfig, model_bytes: bytes,
            compiled: Mapping[str, bytes] = MappingProxyType({})) -> int:
        """Write a new version of ``config.name`` atomically; return its number.
        ``compiled``: its backends' compiled artefacts ({path in the version: bytes})."""
        model_dir = self.root / check_name(config.name)
        model_dir.mkdir(parents=True, exist_ok=True)
        remove_stale(model_dir)
        tmp = _scratch("tmp", model_dir)
        try:
            write_files(tmp, {MODEL_FILE: model_bytes, CONFIG_FILE: config.dumps().encode(), **compiled})
            os.chmod(tmp, 0o755)
            _fsync_dir(tmp)  # its entries reach the disk before the rename publishes them
            while True:
                # Past every numbered directory, complete or not: a partial one (a removal
                # killed midway) would make the rename below fail for the same number forever.
                version = max((int(p.name) for p in model_dir.iterdir() if p.name.isdigit()), default=0) + 1
                try:
                    os.rename(tmp, model_dir / str(version))  # atomic; fails if taken meanwhile
                    break
                except OSError:
                    if not (model_dir / str(version)).exists():
                        raise
            _fsync_dir(model_dir)
            return version
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def add_compiled(self, name: str, version: int, compiled: Mapping[str, bytes]) -> None:
        """Write compiled artefacts into an existing version. The one change a version
        takes: a cache of what its files compile to, which a load checks before use
        and never needs (``backends.base.Backend.compiled_files``)."""
        write_files(self.version_dir(name, version), compiled)

    def tidy(self) -> None:
        """Delete what writers that died mid-write left, in every model folder and at the top
        (a removed model's scratch folder); the server does it at start, add and remove as they go."""
        if not self.root.is_dir():
            return
        remove_stale(self.root)
        for model_dir in self.root.iterdir():
            if model_dir.is_dir() and _NAME.fullmatch(model_dir.name):
                remove_stale(model_dir)

    def remove(self, name: str) -> None:
        """Delete every version of a model."""
        model_dir = self.root / check_name(name)
        if not model_dir.is_dir():
            raise ModelNotFound(f"no model '{name}' in {self.root}")
        _discard(model_dir, f"{name}-")

    def remove_version(self, name: str, version: int) -> None:
        """Delete one version (a deploy whose load the server refused)."""
        _discard(self.version_dir(name, version), f"{version}-")


def _discard(path: Path, label: str) -> None:
    """Delete ``path``, renaming it away first so that no reader ever sees it half deleted."""
    remove_stale(path.parent)
    doomed = _scratch("rm", path.parent, label)
    os.rename(path, doomed / path.name)
    shutil.rmtree(doomed, ignore_errors=True)
