"""Backend options and layer formats -> the one ``HwConfig`` a model runs on.

Options (``ModelConfig.backend_options``, strings; ``serve deploy --option k=v``):

``engine=auto``      the matrix engine: ``systolic`` (the array), ``mvu`` (the matrix-vector
                     unit) or ``auto``: the model is compiled for both and runs on the one
                     whose modeled latency is lower. Default: auto, or the one engine
                     that ``array`` or ``mvu`` sizes
``array=RxC``        systolic array rows x cols (default: ``hw.config.DEFAULT``'s)
``mvu=TxDxN``        MVU tile engines x dot-product engines x lanes, or a preset name
                     (``hw.config.MVU_PRESETS``: ``small``, the default, ``tiny``, ``brainwave``)
``fpga_sim=golden``  matrix tiles on the numpy golden model (default) or ``rtl`` (Verilator)
``strict=0|1``       1: refuse a model with any op the device does not run
``weight_mem=N``     on-chip weight memory in bytes (suffixes KiB, MiB accepted); the MVU's
                     is shared equally by its tile engines; with ``devices``, each device's
``devices=1``        MVUs the model is pinned over (``backends.fpga.partition``), each with
                     the weight memory above, or ``auto``: the fewest that hold it. More
                     than one (or auto) chooses the MVU
``split=auto``       over several devices: ``whole`` matrices each on one device, ``rows``
                     (large products' output rows split over the devices), or ``auto``:
                     whichever the cycle model rates faster
``device_procs=0|1`` 1: each device a process of its own (``backends.fpga.device``, spawned
                     here on loopback), registers passed between them over TCP; 0 (default):
                     every device in the server's process
``device_addrs=H:P,...``  the devices are the processes already listening there (one
                     address a device, in device order; e.g. pods behind a headless
                     Service): the model is pinned over that many (``devices``, if
                     given, must agree; ``auto`` means them)
``device_timeout_s=10``  with device processes: seconds a request may take on them before
                     it fails (UNAVAILABLE) and the devices are checked and restored
``mant_bits=N``      override the array's mantissa width chosen from the formats
``activations=layer_formats``  (set by ``models.quantize``) each product's input is
                     quantised in its weight's format: the only rule the device has

The engine's mantissa width follows the formats the model uses: an integer element of
``m`` magnitude bits plus a sign needs ``m + 1`` bits of two's complement; an fp32 or
fp16 layer (or an MX minifloat, whose elements span more than 16 bits as integers)
gets the widest setting, 16 bits with a 63-bit accumulator (``hw.config`` preset
``ref16``). Its block is the largest that divides both the array's rows (the MVU's
lanes) and every format's block, so a format block is a whole number of hardware
blocks sharing one exponent (exact).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from backends.base import ModelLoadFailed
from backends.fpga.wire import parse_address
from hw.config import DEFAULT, MVU_PRESETS, HwConfig, MvuConfig, mvu_preset, preset
from models.quantize.formats import Family, Format, parse_format
from models.quantize.report import ACTIVATIONS_LIKE_WEIGHTS, ACTIVATIONS_OPTION

WIDEST = preset("ref16")
_SIZE = re.compile(r"^\s*(\d+)\s*(KiB|MiB|GiB|k|K|M)?\s*$")
_UNITS = {None: 1, "k": 1024, "K": 1024, "KiB": 1024, "M": 2**20, "MiB": 2**20, "GiB": 2**30}
KNOWN = ("engine", "array", "mvu", "fpga_sim", "strict", "weight_mem", "mant_bits", "devices", "split", "device_procs",
         "device_addrs", "device_timeout_s", ACTIVATIONS_OPTION)
ENGINES = ("auto", "systolic", "mvu")
SPLITS = ("auto", "whole", "rows")


@dataclass(frozen=True)
class FpgaOptions:
    engine: str  # "auto" | "systolic" | "mvu"
    rows: int
    cols: int
    mvu: MvuConfig  # the MVU's shape (tiles, dpes, lanes); widths follow the formats
    sim: str  # "golden" | "rtl" | "tile" (golden, one hw.golden.tile_matmul call per tile)
    strict: bool
    weight_mem: int | None
    mant_bits: int | None
    devices: int | None = 1  # None: the fewest that hold the model
    device_procs: bool = False  # each device a process of its own (spawned, or at device_addrs)
    device_addrs: tuple[str, ...] | None = None  # HOST:PORT of each device process already running
    device_timeout_s: float = 10.0  # the longest a request may take on device processes
    split: str = "auto"  # over several devices: "whole" | "rows" | "auto" (backends.fpga.partition)


def parse_options(options: dict[str, str]) -> FpgaOptions:
    """Check and parse the backend options; an unknown or malformed one is an error."""
    unknown = set(options) - set(KNOWN)
    if unknown:
        raise ModelLoadFailed(f"unknown fpga option(s) {sorted(unknown)}; known: {', '.join(KNOWN)}")
    rule = options.get(ACTIVATIONS_OPTION, ACTIVATIONS_LIKE_WEIGHTS)
    if rule != ACTIVATIONS_LIKE_WEIGHTS:
        raise ModelLoadFailed(f"fpga option {ACTIVATIONS_OPTION}={rule!r}: the device quantises each product's "
                              f"input like its weights ({ACTIVATIONS_LIKE_WEIGHTS!r}) and knows no other rule")
    addrs = _addresses(options["device_addrs"]) if "device_addrs" in options else None
    devices = _devices(options.get("devices", "1"))
    if addrs is not None:  # the devices are there: the model is pinned over all of them (some may idle)
        if devices is not None and "devices" in options and devices != len(addrs):
            raise ModelLoadFailed(f"fpga option device_addrs lists {len(addrs)} devices but devices={devices}; "
                                  f"leave devices out (or auto) to pin the model over the devices listed")
        devices = len(addrs)
    procs = addrs is not None or options.get("device_procs", "0").strip().lower() in ("1", "true", "yes")
    # Sizing one engine and not the other chooses it, as does more than one device (only
    # the MVU is pinned over several); engine= says so outright.
    implied = "auto" if ("array" in options) == ("mvu" in options) else "systolic" if "array" in options else "mvu"
    engine = options.get("engine", "mvu" if devices != 1 and "array" not in options else implied).strip().lower()
    if engine not in ENGINES:
        raise ModelLoadFailed(f"fpga option engine={options['engine']!r}: expected one of {', '.join(ENGINES)}")
    if devices != 1 and engine != "mvu":
        raise ModelLoadFailed(f"fpga option devices={options['devices']!r}: only the matrix-vector unit's "
                              f"weights are pinned over several devices (engine=mvu); the systolic array is one")
    mvu = _mvu_shape(options.get("mvu", "small"))
    rows, cols = DEFAULT.rows, DEFAULT.cols
    if "array" in options:
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", options["array"])
        if not m:
            raise ModelLoadFailed(f"fpga option array={options['array']!r}: expected ROWSxCOLS, e.g. 16x16")
        rows, cols = int(m[1]), int(m[2])
    sim = options.get("fpga_sim", "golden")
    if sim not in ("golden", "rtl", "tile"):
        raise ModelLoadFailed(f"fpga option fpga_sim={sim!r}: expected golden or rtl")
    strict = options.get("strict", "0").strip().lower() in ("1", "true", "yes")
    mem = None
    if "weight_mem" in options:
        m = _SIZE.match(options["weight_mem"])
        if not m:
            raise ModelLoadFailed(f"fpga option weight_mem={options['weight_mem']!r}: expected bytes, e.g. 8MiB")
        mem = int(m[1]) * _UNITS[m[2]]
    mant = int(options["mant_bits"]) if "mant_bits" in options else None
    if procs and sim != "golden":
        raise ModelLoadFailed(f"fpga option fpga_sim={sim}: device processes run the golden model "
                              f"(device_procs, device_addrs); fpga_sim=rtl simulates one device in the server")
    timeout = _seconds(options.get("device_timeout_s", "10"))
    split = options.get("split", "auto").strip().lower()
    if split not in SPLITS:
        raise ModelLoadFailed(f"fpga option split={options['split']!r}: expected one of {', '.join(SPLITS)}")
    return FpgaOptions(engine, rows, cols, mvu, sim, strict, mem, mant, devices, procs, addrs, timeout, split)


def _devices(text: str) -> int | None:
    """``devices=K`` (K >= 1) or ``auto`` (None)."""
    if text.strip().lower() == "auto":
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise ModelLoadFailed(f"fpga option devices={text!r}: expected a number of devices (1 or more) or auto")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ModelLoadFailed(f"fpga option device_timeout_s={text!r}: expected seconds > 0, e.g. 10")
    return value


def _addresses(text: str) -> tuple[str, ...]:
    """``device_addrs=HOST:PORT,HOST:PORT``: each checked, none empty."""
    addrs = tuple(a.strip() for a in text.split(","))
    for a in addrs:
        try:
            parse_address(a)
        except ValueError as exc:
            raise ModelLoadFailed(f"fpga option device_addrs={text!r}: {exc}; expected HOST:PORT,HOST:PORT,... "
                                  f"(one device process each)") from None
    return addrs


def _mvu_shape(text: str) -> MvuConfig:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if m:
        try:
            base = mvu_preset("small")
            lanes = int(m[3])
            return replace(base, tiles=int(m[1]), dpes=int(m[2]), lanes=lanes, block=math.gcd(lanes, base.block))
        except (TypeError, ValueError) as exc:
            raise ModelLoadFailed(f"fpga option mvu={text!r}: {exc}") from exc
    if text.strip() in MVU_PRESETS:
        return mvu_preset(text.strip())
    raise ModelLoadFailed(f"fpga option mvu={text!r}: expected TILESxDPESxLANES (e.g. 2x8x16) or a preset "
                          f"({', '.join(sorted(MVU_PRESETS))})")


def element_bits(fmt: Format | None) -> int:
    """Two's-complement mantissa bits that hold every element of ``fmt`` exactly."""
    if fmt is None or fmt.spec.family is not Family.BFP and not (
            fmt.spec.family is Family.MX and fmt.spec.element.spec.is_int):
        return WIDEST.mant_bits
    return fmt.spec.element.spec.mbits + 2  # magnitude bits (mbits + 1) and a sign


def layer_format(name: str | None) -> Format | None:
    """A layer's format by name; fp32/fp16 (or none) mean the array's widest encoding."""
    if not name:
        return None
    fmt = parse_format(name)
    if fmt.spec.family is Family.INT8:
        raise ModelLoadFailed("int8 (onnxruntime QDQ) models are for cpu/gpu; deploy a block format on fpga")
    return None if fmt.spec.family is Family.IEEE else fmt


def _widths(opts: FpgaOptions, formats: list[Format | None], k_unit: int) -> tuple[HwConfig, int, int]:
    """The arithmetic every format fits: (base preset, mantissa bits, block along K)."""
    mant = opts.mant_bits or max([element_bits(f) for f in formats] or [WIDEST.mant_bits])
    base = WIDEST if mant > DEFAULT.mant_bits else DEFAULT
    block = math.gcd(k_unit, base.block)
    for f in formats:
        if f is not None:
            block = math.gcd(block, f.spec.block_size)
    return base, mant, block


def hw_config(opts: FpgaOptions, formats: list[Format | None]) -> HwConfig:
    """The array a model runs on: the options' size, widths to hold every format."""
    base, mant, block = _widths(opts, formats, opts.rows)
    try:
        return replace(base, rows=opts.rows, cols=opts.cols, block=block, mant_bits=mant,
                       weight_mem_bytes=opts.weight_mem or base.weight_mem_bytes)
    except (TypeError, ValueError) as exc:
        raise ModelLoadFailed(f"fpga options give an invalid array: {exc}") from exc


def mvu_config(opts: FpgaOptions, formats: list[Format | None]) -> MvuConfig:
    """The MVU a model runs on: the options' shape, the same widths as the array's."""
    base, mant, block = _widths(opts, formats, opts.mvu.lanes)
    mem = opts.weight_mem // opts.mvu.tiles if opts.weight_mem else opts.mvu.tile_mem_bytes
    try:
        acc = base.acc_bits if base is WIDEST else opts.mvu.acc_bits
        return replace(opts.mvu, block=block, mant_bits=mant, acc_bits=acc,
                       tile_mem_bytes=mem)
    except (TypeError, ValueError) as exc:
        raise ModelLoadFailed(f"fpga options give an invalid matrix-vector unit: {exc}") from exc
