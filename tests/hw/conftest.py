"""Shared fixtures for the hardware tests: Verilator checks and one model per config.

Builds go to the normal cache ($BWSERVE_HW_CACHE or ~/.cache/bwserve/hw), so a
second run reuses them; within a run each config is built once.
"""
from __future__ import annotations

import os

import pytest

from hw.toolchain import ToolMissing, find_cxx, find_verilator


def require_verilator():
    """The Verilator in use; skips (one reason) when it or a C++ compiler is missing."""
    try:
        tool = find_verilator()
    except ToolMissing as e:
        pytest.skip(f"needs Verilator: {e}")
    try:
        find_cxx()
    except ToolMissing as e:
        pytest.skip(f"needs a C++ compiler: {e}")
    return tool


def require_pyverilator():
    tool = require_verilator()
    pytest.importorskip("pyverilator", reason="needs pyverilator-mm (pip install pyverilator-mm)")
    if tool.origin != "path":
        pytest.skip("pyverilator needs `verilator` on PATH (Debian's package)")


def _sims(make):
    """A session's simulators: cfg -> make(cfg), created on first use; yields the lookup,
    then closes them all."""
    sims: dict = {}

    def get(cfg):
        require_verilator()
        if cfg not in sims:
            sims[cfg] = make(cfg)
        return sims[cfg]

    yield get
    for s in sims.values():
        s.close()


@pytest.fixture(scope="session")
def tile_sims():
    """HwConfig -> TileSim, created on first use and kept for the session."""
    from hw.sim import TileSim

    yield from _sims(TileSim)


@pytest.fixture(scope="session")
def mvu_sims():
    """MvuConfig -> MvuSim (the matrix-vector unit), created on first use and kept for the session."""
    from hw.mvu.sim import MvuSim

    yield from _sims(MvuSim)


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
