"""Running the `serve` command as a user does, and checking what it leaves and says."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SERVE = [sys.executable, "-m", "serve.cli"]
ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`serve ARGS` in ``cwd``, this checkout's code, rich's tables wide enough not to wrap."""
    return subprocess.run([*SERVE, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})


def tree(folder: Path) -> list[str]:
    """Every path under ``folder``: what a refused command must leave as it found it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def one_sentence(stderr: str) -> str:
    """The message with rich's line wrapping undone; fails on a traceback or a second sentence."""
    text = " ".join(stderr.split())
    assert "Traceback" not in stderr and ". " not in text, stderr
    return text
