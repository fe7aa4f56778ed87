"""benchmarks/hw_c_loop.c, the C caller that times bw_run_tile without Python, builds
against the C ABI and runs the model hw.build caches, with the cycle model's count."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hw.config import PRESETS
from hw.cycles import tile_cycles
from tests.hw.conftest import require_verilator

DRIVER = Path(__file__).resolve().parents[2] / "benchmarks" / "hw_c_loop.c"


@pytest.mark.parametrize("preset", ["default", "small"])
def test_the_c_driver_runs_tiles_of_the_cycle_models_length(tmp_path, preset) -> None:
    require_verilator()
    from hw.build import build_model

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("needs a C compiler")
    exe = tmp_path / "hw_c_loop"
    subprocess.run([compiler, "-O2", "-Wall", "-Werror", "-o", str(exe), str(DRIVER), "-ldl"], check=True)
    cfg = PRESETS[preset]
    for vectors in (1, 16, 40):
        done = subprocess.run([str(exe), str(build_model(cfg)), str(vectors), "20", "3"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        match = re.search(r"(\d+)x(\d+) array, (\d+)-vector tiles \((\d+) cycles\): best ([\d.]+)M", done.stdout)
        assert match, done.stdout
        rows, cols, n, cycles, best = match.groups()
        assert (int(rows), int(cols), int(n)) == (cfg.rows, cfg.cols, vectors)
        assert int(cycles) == tile_cycles(cfg, vectors)
        assert float(best) > 0
