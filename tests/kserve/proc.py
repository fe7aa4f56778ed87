"""Start `serve start` as a real process (optionally inside a network namespace) and read its port."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_serve(args: list[str], prefix: list[str] = (), env: dict[str, str] | None = None,
                timeout: float = 120) -> tuple[subprocess.Popen, int, str]:
    """Run ``[*prefix, python -m serve.cli start, *args]``; return (process, gRPC port, output so far).

    Waits for the "serving on HOST:PORT" line, printed once the models are loaded.
    The caller owns the process (kill it in a finalizer).
    """
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "serve.cli", "start", *args], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT), **(env or {})})
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"serving on \S+?:(\d+)", line)
        if match:
            return proc, int(match.group(1)), "".join(lines)
    proc.kill()
    rest = proc.communicate(timeout=10)[0] or ""
    raise AssertionError(f"serve start exited ({proc.returncode}) before serving:\n{''.join(lines)}{rest}")


def stop(proc: subprocess.Popen) -> None:
    """Kill a process we started, if it still runs (finalizers)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
