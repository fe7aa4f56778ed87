"""Shared fixtures for the hardware tests: Verilator checks and one model per config.

Builds go to the normal cache ($BWSERVE_HW_CACHE or ~/.cache/bwserve/hw), so a
second run reuses them; within a run each config is built once.
"""
from __future__ import annotations

import os

import pytest

from hw.toolchain import ToolMissing, find_verilator


def require_verilator():
    try:
        return find_verilator()
    except ToolMissing as e:
        pytest.skip(f"needs Verilator: {e}")


def require_pyverilator():
    tool = require_verilator()
    pytest.importorskip("pyverilator", reason="needs pyverilator-mm (pip install pyverilator-mm)")
    if tool.origin != "path":
        pytest.skip("pyverilator needs `verilator` on PATH (Debian's package)")


@pytest.fixture(scope="session")
def tile_sims():
    """cfg -> TileSim, created on first use and kept for the session."""
    from hw.sim import TileSim

    sims: dict = {}

    def get(cfg):
        require_verilator()
        if cfg not in sims:
            sims[cfg] = TileSim(cfg)
        return sims[cfg]

    yield get
    for s in sims.values():
        s.close()


@pytest.fixture
def vcd_path(request, tmp_path):
    """Where a test may write a VCD: $BWSERVE_HW_VCD/<test>.vcd if set, else None."""
    d = os.environ.get("BWSERVE_HW_VCD")
    if not d:
        return None
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, request.node.name.replace("/", "_") + ".vcd")


@pytest.fixture
def verilator():
    """The Verilator in use; skips the test when there is none."""
    return require_verilator()


@pytest.fixture(scope="session")
def pyverilator_ready():
    """Skips unless pyverilator-mm and Debian's verilator are there."""
    require_pyverilator()
