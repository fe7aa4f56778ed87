"""The compiled program as files in a model's version folder: compile once, load many times.

A compile's result (``Compiled``: the chosen engine's ``isa.Program`` and config, its
cycle table, the other engine's figures) is written as two files under
``<version>/compiled/``, named by a key of everything that decides the program (the
model's bytes, its layer formats, the options that shape the device, the engines
tried, and the compiler's own source): ``fpga-<key>.json``, every dataclass of the
program walked field by field (so a new field of ``isa``'s or ``partition``'s classes
needs no change here), and ``fpga-<key>.npz``, every numpy array it holds (pinned weight
images, constants; integers in their narrowest type) and the host partitions' ONNX bytes.

Why not pickle: a model repository is user-writable, and unpickling a file someone
swapped runs their code. JSON builds only dataclasses and named tuples of the modules
in ``_MODULES``, and the arrays load with ``allow_pickle=False``. The npz holds its key
and is written before the JSON; zip's CRC-32 checks every array read.

A load never fails because of an artefact: one that is missing (of another key) or
unreadable (``Unreadable``: damaged, swapped, torn) is logged and the model compiled.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from hw.config import HwConfig, MvuConfig

from backends.fpga import isa
from backends.fpga.cycles import ProgramCost
from backends.fpga.operands import blas_operands
from backends.fpga.options import FpgaOptions

FORMAT = 1  # bump when the layout of these files changes
FOLDER = "compiled"
# Where the classes a file may name live (a dataclass or NamedTuple defined there).
_MODULES = ("backends.fpga.isa", "backends.fpga.partition", "backends.fpga.cycles", "hw.config", "hw.mvu.layout")
# The code whose change can change a program or its cycles: its source is in the key,
# but for the modules that only run a program (so that a change there keeps artefacts;
# a module not named here counts, new ones included).
_SOURCES = ("backends/fpga", "hw", "hw/mvu", "models/quantize")
_RUNS_ONLY = frozenset({
    "backends/fpga/runtime.py", "backends/fpga/kernels.py", "backends/fpga/matunit.py", "backends/fpga/mvu.py",
    "backends/fpga/device.py", "backends/fpga/devplan.py", "backends/fpga/procs.py", "backends/fpga/wire.py",
    "backends/fpga/summary.py", "hw/__main__.py", "hw/build.py", "hw/toolchain.py", "hw/sim.py", "hw/pysim.py",
    "hw/random_tiles.py", "hw/mvu/sim.py", "hw/mvu/random_products.py"})
_ROOT = Path(__file__).resolve().parents[2]
# FpgaOptions that choose what runs a program (the golden model, Verilator, device
# processes and where they are), not what the program is.
_RUNS_ON = ("sim", "device_procs", "device_addrs", "device_timeout_s")


@dataclass
class Compiled:
    """What a compile produces and a load binds."""

    engine: str  # "systolic" | "mvu": the one the program is for
    program: isa.Program
    cfg: HwConfig | MvuConfig
    cost: ProgramCost
    candidates: dict[str, ProgramCost]  # every engine that took the model -> its figures
    refused: dict[str, str]  # every engine that did not -> why


# -- the key ------------------------------------------------------------------------------
@functools.cache
def compiler_digest() -> str:
    """SHA-256 of the compiler's, cycle model's and formats' source (``_SOURCES`` but
    ``_RUNS_ONLY``): a changed compiler never reads an artefact an older one wrote."""
    h = hashlib.sha256()
    for folder in _SOURCES:
        for path in sorted((_ROOT / folder).glob("*.py")):
            rel = path.relative_to(_ROOT).as_posix()
            if rel not in _RUNS_ONLY:
                h.update(rel.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def key(model_bytes: bytes, layer_formats: dict[str, str], opts: FpgaOptions, engines: tuple[str, ...]) -> str:
    """The artefact key (hex): what decides the program; not the options in
    ``_RUNS_ON``, which pick what runs it (``engines`` says what ``sim`` excludes)."""
    shaping = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts) if f.name not in _RUNS_ON}
    parts = [FORMAT, compiler_digest(), hashlib.sha256(model_bytes).hexdigest(), sorted(layer_formats.items()),
             _encode(shaping, []), list(engines)]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def paths(folder: Path, k: str) -> tuple[Path, Path]:
    """The (JSON, npz) pair for key ``k`` in version folder ``folder``."""
    base = Path(folder) / FOLDER / f"fpga-{k}"
    return base.with_suffix(".json"), base.with_suffix(".npz")


# -- writing ------------------------------------------------------------------------------
def files(compiled: Compiled, k: str, summary: dict) -> dict[str, bytes]:
    """The artefact as {path relative to the version folder: bytes} (``summary`` is
    stored beside the program for whoever inspects the file)."""
    arrays: list[np.ndarray] = []
    tree = _encode(_fields(compiled), arrays)
    buf = io.BytesIO()
    np.savez(buf, key=np.frombuffer(k.encode(), np.uint8), **{f"a{i}": a for i, a in enumerate(arrays)})
    npz = buf.getvalue()
    doc = {"format": FORMAT, "key": k, "arrays": len(arrays), "summary": summary, "compiled": tree}
    json_path, npz_path = paths(Path(), k)
    # The npz first: the JSON, written last in the order the caller keeps, makes the pair count.
    return {str(npz_path): npz, str(json_path): json.dumps(doc, separators=(",", ":")).encode()}


# -- reading ------------------------------------------------------------------------------
class Unreadable(Exception):
    """An artefact of the right name that cannot be used (the message says why)."""


def read(folder: Path, k: str) -> Compiled | None:
    """The artefact of key ``k`` in version folder ``folder``; None if there is none;
    ``Unreadable`` if it is damaged, swapped or inconsistent."""
    json_path, npz_path = paths(folder, k)
    if not json_path.is_file():
        return None
    try:
        doc = json.loads(json_path.read_bytes())
        if doc.get("format") != FORMAT or doc.get("key") != k:
            raise ValueError(f"format {doc.get('format')!r} key {doc.get('key')!r}, expected {FORMAT} {k}")
        with np.load(npz_path, allow_pickle=False) as z:  # zip's CRC-32 checks each array as it reads it
            if z["key"].tobytes().decode() != k or len(z.files) != doc["arrays"] + 1:
                raise ValueError(f"{npz_path.name} is not the one {json_path.name} was written with")
            arrays = [z[f"a{i}"] for i in range(doc["arrays"])]
        compiled = Compiled(**_decode(doc["compiled"], arrays))
        _check(compiled)
    except Exception as exc:  # any damage at all: the caller compiles instead
        raise Unreadable(f"{json_path} is unreadable ({type(exc).__name__}: {exc})") from exc
    compiled.program.prologue = [_with_blas(compiled.cfg, p) for p in compiled.program.prologue]
    return compiled


def _check(c: Compiled) -> None:
    """The decoded parts have the types a load binds (a hand-edited file may say anything)."""
    if not (isinstance(c.program, isa.Program) and isinstance(c.cfg, (HwConfig, MvuConfig))
            and isinstance(c.cost, ProgramCost)):
        raise TypeError("not a compiled program")
    if not all(isinstance(m, onnx.ModelProto) for m in c.program.host_parts):
        raise TypeError("a host partition is not an ONNX model")


def _with_blas(cfg, pin):
    """``MvuWeights.blas_operands`` are derived from the mantissas, so not stored: made again."""
    if isinstance(pin, isa.PinWeights) and isinstance(pin.tiles, isa.MvuWeights):
        ops = blas_operands(cfg, pin.tiles.mant)
        return dataclasses.replace(pin, tiles=dataclasses.replace(pin.tiles, blas_operands=ops))
    return pin


def encode_program(cfg, program: isa.Program) -> tuple[Any, list[np.ndarray]]:
    """A config and program as JSON data and the arrays they hold: the walk the artefact
    is written with, which also carries a device's slice to its process (``devplan``)."""
    arrays: list[np.ndarray] = []
    return _encode((cfg, program), arrays), arrays


def decode_program(tree, arrays: list[np.ndarray]) -> tuple[Any, isa.Program]:
    """``encode_program``'s inverse (only the classes of ``_MODULES`` built; BLAS operands made again)."""
    cfg, program = _decode(tree, arrays)
    if not (isinstance(program, isa.Program) and isinstance(cfg, (HwConfig, MvuConfig))):
        raise TypeError("not a compiled program")
    program.prologue = [_with_blas(cfg, p) for p in program.prologue]
    return cfg, program


# -- the walk -----------------------------------------------------------------------------
def _fields(obj) -> dict[str, Any]:
    """A dataclass's stored fields: all but those marked ``metadata={"derived": True}``."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if not f.metadata.get("derived")}


def _encode(value, arrays: list[np.ndarray]):
    """``value`` as JSON data; arrays (and ONNX models, as bytes) appended to ``arrays``.
    Every JSON object is a tagged node, so no plain dict can be mistaken for one."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"dc": _class_name(value), "f": {k: _encode(v, arrays) for k, v in _fields(value).items()}}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple
        return {"nt": _class_name(value), "v": [_encode(v, arrays) for v in value]}
    if isinstance(value, (np.ndarray, np.generic)):
        a = np.asarray(value)
        arrays.append(_narrow(a))
        return {"np": len(arrays) - 1, "dtype": a.dtype.str, "scalar": isinstance(value, np.generic)}
    if isinstance(value, onnx.ModelProto):
        arrays.append(np.frombuffer(value.SerializeToString(), np.uint8))
        return {"onnx": len(arrays) - 1}
    if isinstance(value, tuple):
        return {"t": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, dict):
        return {"d": [[_encode(k, arrays), _encode(v, arrays)] for k, v in value.items()]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"a compiled program holds a {type(value).__name__}, which the artefact cannot store")


def _decode(data, arrays: list[np.ndarray]):
    if isinstance(data, list):
        return [_decode(v, arrays) for v in data]
    if not isinstance(data, dict):
        return data
    if "dc" in data:
        return _class(data["dc"], dataclass=True)(**{k: _decode(v, arrays) for k, v in data["f"].items()})
    if "nt" in data:
        return _class(data["nt"], dataclass=False)(*(_decode(v, arrays) for v in data["v"]))
    if "np" in data:
        a = arrays[data["np"]].astype(np.dtype(data["dtype"]), copy=False)
        return a[()] if data["scalar"] else a
    if "onnx" in data:
        return onnx.load_model_from_string(arrays[data["onnx"]].tobytes())
    if "t" in data:
        return tuple(_decode(v, arrays) for v in data["t"])
    if "d" in data:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in data["d"]}
    raise ValueError(f"unknown node {sorted(data)}")


def _narrow(a: np.ndarray) -> np.ndarray:
    """An integer array in the narrowest integer type that holds its values (the engines
    keep 8-bit mantissas in int64: a file 8x smaller, read back in their own type)."""
    if a.dtype.kind not in "iu" or not a.size:
        return a
    lo, hi = int(a.min()), int(a.max())
    for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32):
        if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max and np.dtype(t).itemsize < a.dtype.itemsize:
            return a.astype(t)
    return a


def _class_name(value) -> str:
    cls = type(value)
    name = f"{cls.__module__}:{cls.__qualname__}"
    _class(name, dataclasses.is_dataclass(cls))  # refuse at write what a read would refuse
    return name


@functools.cache
def _class(name: str, dataclass: bool) -> type:
    """The class ``module:Name``, only a dataclass (or NamedTuple) of ``_MODULES``."""
    module, _, qual = name.partition(":")
    cls = getattr(importlib.import_module(module), qual, None) if module in _MODULES else None
    ok = isinstance(cls, type) and (dataclasses.is_dataclass(cls) if dataclass else
                                    issubclass(cls, tuple) and hasattr(cls, "_fields"))
    if not ok:
        raise TypeError(f"{name} is not a class a compiled program may hold")
    return cls
