"""The one hardware configuration: the systolic array and the matrix-vector unit.

Everything else is derived from a :class:`HwConfig`: the Verilog parameters
(:meth:`HwConfig.verilog_params`), the golden model's widths, the cycle model and
the build cache key. A number that describes the hardware is written here once.

Variants are made by copying, never by mutation::

    from dataclasses import replace
    cfg = replace(DEFAULT, rows=32, cols=32)

The block-floating-point operand format (see ``hw/README.md`` for the arithmetic):

* a *mantissa* is a ``mant_bits``-wide two's complement integer, the most negative
  code included;
* a *block* of ``block`` consecutive values along the reduction dimension shares one
  exponent, an ``exp_bits``-wide two's complement integer (no bias);
* a value is ``mantissa * 2**exponent``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["BfpArith", "HwConfig", "DEFAULT", "PRESETS", "preset",
           "MvuConfig", "MVU_DEFAULT", "MVU_PRESETS", "mvu_preset", "LinkConfig", "DEVICE_LINK", "HOST_LINK"]

# Limits of what the RTL and the golden model support. acc_bits stops at 63 so that
# the golden model's int64 arithmetic (a sum of two accumulators) cannot overflow.
_MAX_DIM = 64
_MANT_RANGE = (2, 16)
_EXP_RANGE = (2, 8)
_MAX_ACC_BITS = 63


class BfpArith:
    """The block-floating-point arithmetic both matrix engines share (a mixin).

    Its fields (``mant_bits``, ``exp_bits``, ``block``, ``acc_bits``, ``clock_hz``, and the
    depth of the vector unit beside the engine, ``vector_latency``) are declared by each
    engine's dataclass; the derived ranges and widths are written
    once, here, and ``hw.golden``'s ``align``, ``sat_add`` and ``acc_exp_rule`` read
    only these.
    """

    mant_bits: int
    exp_bits: int
    block: int
    acc_bits: int
    clock_hz: float
    vector_latency: int

    def _check_arith(self, ints: tuple[str, ...]) -> None:
        for name in ints:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{type(self).__name__}.{name} must be an int, got {value!r}")
        cls = type(self).__name__
        if not _MANT_RANGE[0] <= self.mant_bits <= _MANT_RANGE[1]:
            raise ValueError(f"{cls}.mant_bits must be in {_MANT_RANGE}, got {self.mant_bits}")
        if not _EXP_RANGE[0] <= self.exp_bits <= _EXP_RANGE[1]:
            raise ValueError(f"{cls}.exp_bits must be in {_EXP_RANGE}, got {self.exp_bits}")
        if self.block < 1:
            raise ValueError(f"{cls}.block must be positive, got {self.block}")
        # The right shift clamps at acc_bits - 1, which rounds correctly only if a
        # block sum has fewer bits than that (see golden.align).
        if not self.psum_bits + 1 <= self.acc_bits <= _MAX_ACC_BITS:
            raise ValueError(
                f"{cls}.acc_bits must be in {self.psum_bits + 1}..{_MAX_ACC_BITS} "
                f"(a block sum needs {self.psum_bits} bits), got {self.acc_bits}"
            )
        if not self.clock_hz > 0:
            raise ValueError(f"{cls}.clock_hz must be positive, got {self.clock_hz}")
        if self.vector_latency < 0:
            raise ValueError(f"{cls}.vector_latency must be >= 0, got {self.vector_latency}")

    # -- operand ranges -------------------------------------------------------
    @property
    def mant_min(self) -> int:
        return -(1 << (self.mant_bits - 1))

    @property
    def mant_max(self) -> int:
        return (1 << (self.mant_bits - 1)) - 1

    @property
    def exp_min(self) -> int:
        return -(1 << (self.exp_bits - 1))

    @property
    def exp_max(self) -> int:
        return (1 << (self.exp_bits - 1)) - 1

    # -- derived datapath widths ----------------------------------------------
    @property
    def psum_bits(self) -> int:
        """Width of a block's integer dot product; it can never overflow.

        The largest magnitude is ``block * mant_min**2`` (every product of two most
        negative mantissas); one more bit holds the sign.
        """
        return (self.block * self.mant_min * self.mant_min).bit_length() + 1

    @property
    def acc_exp_bits(self) -> int:
        """Width of the accumulator-exponent input: holds any sum of two exponents."""
        return self.exp_bits + 1

    @property
    def acc_exp_min(self) -> int:
        return -(1 << self.exp_bits)

    @property
    def acc_exp_max(self) -> int:
        return (1 << self.exp_bits) - 1

    @property
    def acc_min(self) -> int:
        return -(1 << (self.acc_bits - 1))

    @property
    def acc_max(self) -> int:
        return (1 << (self.acc_bits - 1)) - 1

    @property
    def weight_bits(self) -> float:
        """Storage per weight in the weight memory: a mantissa plus its share of an exponent."""
        return self.mant_bits + self.exp_bits / self.block


@dataclass(frozen=True)
class HwConfig(BfpArith):
    """Parameters of one systolic array; checked when made."""

    rows: int = 16  # PE rows = reduction (K) length of a weight tile
    cols: int = 16  # PE columns = output (N) width of a weight tile
    mant_bits: int = 8  # operand mantissa width, sign included
    exp_bits: int = 8  # shared-exponent width, two's complement
    block: int = 16  # values per shared exponent, along K; divides rows
    acc_bits: int = 48  # accumulator width, two's complement, saturating
    clock_hz: float = 250e6  # the modelled FPGA clock, for time estimates
    weight_mem_bytes: int = 8 * 2**20  # on-chip weight memory (pinned weights)
    # cycles: the vector unit's pipeline depth, from an operand's first elements in to its
    # result's out (the cycle model's assumption, the MVU's own figure: a few-stage fp32
    # multiply-add pipeline; no RTL implements the vector unit)
    vector_latency: int = 4

    def __post_init__(self) -> None:
        self._check_arith(("rows", "cols", "mant_bits", "exp_bits", "block", "acc_bits", "weight_mem_bytes",
                           "vector_latency"))
        for name in ("rows", "cols"):
            if not 1 <= getattr(self, name) <= _MAX_DIM:
                raise ValueError(f"HwConfig.{name} must be in 1..{_MAX_DIM}, got {getattr(self, name)}")
        if self.rows % self.block:
            raise ValueError(f"HwConfig.block ({self.block}) must divide rows ({self.rows})")
        if self.weight_mem_bytes <= 0:
            raise ValueError(f"HwConfig.weight_mem_bytes must be positive, got {self.weight_mem_bytes}")

    @property
    def n_blocks(self) -> int:
        """Exponent blocks per array column (and per input vector)."""
        return self.rows // self.block

    # -- sizes --------------------------------------------------------------------
    @property
    def macs(self) -> int:
        """Multiply-accumulate units (PEs) in the array."""
        return self.rows * self.cols

    @property
    def weight_capacity(self) -> int:
        """How many weights fit in the on-chip weight memory."""
        return int(self.weight_mem_bytes * 8 // self.weight_bits)

    # -- what the RTL is built from -----------------------------------------------
    def verilog_params(self) -> dict[str, int]:
        """The top module's Verilog parameters (``-G`` overrides), in a stable order."""
        return {
            "ROWS": self.rows,
            "COLS": self.cols,
            "MANT": self.mant_bits,
            "EXPW": self.exp_bits,
            "BLOCK": self.block,
            "PSUM": self.psum_bits,
            "ACC": self.acc_bits,
        }

    def name(self) -> str:
        """A short human-readable label, e.g. ``16x16-m8e8b16a48``."""
        return (
            f"{self.rows}x{self.cols}-m{self.mant_bits}e{self.exp_bits}"
            f"b{self.block}a{self.acc_bits}"
        )


@dataclass(frozen=True)
class MvuConfig(BfpArith):
    """Parameters of one matrix-vector unit (Brainwave's MVU, ISCA 2018); checked when made.

    ``tiles`` tile engines, each of ``dpes`` dot-product engines of ``lanes``
    multipliers (the native dimension), each tile engine with its own weight memory
    of ``tile_mem_bytes``. Every cycle each tile engine reads one *word*, ``dpes`` rows
    of ``lanes`` pinned weights, and each DPE multiplies its row slice with the same
    ``lanes`` input elements: ``tiles * dpes * lanes`` MACs a cycle. Weights are
    written once, at model load. ``block`` divides ``lanes`` (a K-chunk of the input
    holds whole exponent blocks). The vector unit chained after the MVU takes a
    whole pass of results a cycle (``vector_lanes``), each of its stages
    ``vector_latency`` cycles deep.
    """

    tiles: int = 2
    dpes: int = 8
    lanes: int = 16
    mant_bits: int = 8
    exp_bits: int = 8
    block: int = 16
    acc_bits: int = 48
    clock_hz: float = 250e6
    tile_mem_bytes: int = 4 * 2**20  # weight memory per tile engine (8 MiB in all, as the array's)
    max_k: int = 4096  # the longest input vector (the input vector buffer holds max_k / lanes words)
    max_m: int = 4096  # the most outputs of one product (the output buffer)
    vector_latency: int = 4  # cycles: one vector-unit stage's pipeline depth

    def __post_init__(self) -> None:
        ints = ("tiles", "dpes", "lanes", "mant_bits", "exp_bits", "block", "acc_bits", "tile_mem_bytes",
                "max_k", "max_m", "vector_latency")
        self._check_arith(ints)
        for name in ("tiles", "dpes", "lanes", "max_k", "max_m"):
            if getattr(self, name) < 1:
                raise ValueError(f"MvuConfig.{name} must be positive, got {getattr(self, name)}")
        if self.lanes % self.block:
            raise ValueError(f"MvuConfig.block ({self.block}) must divide lanes ({self.lanes})")
        if self.mem_words < 1:
            raise ValueError(f"MvuConfig.tile_mem_bytes ({self.tile_mem_bytes}) holds no word of "
                             f"{self.dpes}x{self.lanes} weights")

    @property
    def n_blocks(self) -> int:
        """Exponent blocks per K-chunk (one word row, one input word)."""
        return self.lanes // self.block

    @property
    def macs(self) -> int:
        """Multipliers in the unit."""
        return self.tiles * self.dpes * self.lanes

    @property
    def vector_lanes(self) -> int:
        """Elements the chained vector unit takes a cycle: one pass of the MVU's outputs."""
        return self.tiles * self.dpes

    @property
    def mem_words(self) -> int:
        """Weight words (``dpes`` x ``lanes`` weights) each tile engine's memory holds."""
        return int(self.tile_mem_bytes * 8 // (self.dpes * self.lanes * self.weight_bits))

    @property
    def weight_mem_bytes(self) -> int:
        return self.tiles * self.tile_mem_bytes

    @property
    def x_words(self) -> int:
        """Depth of the input vector buffer, in words of ``lanes`` elements."""
        return -(-self.max_k // self.lanes)

    def splits(self) -> tuple[int, ...]:
        """The ways the tile engines can share K: each divisor of ``tiles``."""
        return tuple(s for s in range(1, self.tiles + 1) if self.tiles % s == 0)

    def verilog_params(self) -> dict[str, int]:
        """The MVU top module's Verilog parameters (``-G`` overrides), in a stable order."""
        return {
            "TILES": self.tiles,
            "DPES": self.dpes,
            "LANES": self.lanes,
            "MANT": self.mant_bits,
            "EXPW": self.exp_bits,
            "BLOCK": self.block,
            "PSUM": self.psum_bits,
            "ACC": self.acc_bits,
            "DEPTH": self.mem_words,
            "XWORDS": self.x_words,
            "YDEPTH": self.max_m,
        }

    def name(self) -> str:
        """A short human-readable label, e.g. ``mvu2x8x16-m8e8b16a48``."""
        return (f"mvu{self.tiles}x{self.dpes}x{self.lanes}-m{self.mant_bits}e{self.exp_bits}"
                f"b{self.block}a{self.acc_bits}")


@dataclass(frozen=True)
class LinkConfig:
    """The network between devices that hold one model together (a Brainwave hardware
    microservice): each device sends over its own port, a transfer costing ``latency_s``
    a hop plus its bytes at ``bytes_per_s``.

    The figures are Catapult v2's (Caulfield et al., "A Cloud-Scale Acceleration
    Architecture", MICRO 2016), the boards Brainwave ran on: each FPGA sits between its
    server's NIC and the datacenter's 40 Gb/s Ethernet and talks to other FPGAs directly
    over the Lightweight Transport Layer. The paper's abstract (checked: microsoft.com/
    research/publication/configurable-cloud-acceleration) gives average FPGA-to-FPGA
    round trips "under 3, 9, and 20 microseconds" among 24, 1,000 and 250,000 machines;
    24 machines is one rack, one top-of-rack switch, and its body's figure for that case,
    2.88 us (not re-checked here), is the one taken: a hop is half that round trip, at
    the 40 Gb/s line rate. Brainwave (ISCA 2018) pinned one model's sub-graphs over
    FPGAs on this network.
    """

    bytes_per_s: float = 40e9 / 8
    latency_s: float = 2.88e-6 / 2  # one hop: the devices share a top-of-rack switch

    def __post_init__(self) -> None:
        if not self.bytes_per_s > 0 or not self.latency_s >= 0:
            raise ValueError(f"LinkConfig needs bytes_per_s > 0 and latency_s >= 0, got {self}")

    def seconds(self, nbytes: int) -> float:
        """One transfer of ``nbytes`` from one device to another."""
        return self.latency_s + nbytes / self.bytes_per_s


DEVICE_LINK = LinkConfig()

# The host link, between the server and its device (the cycle model's Recv, Send and
# HostCall transfers), with a LinkConfig's two figures: PCIe gen3 x8, 8 GT/s a lane at
# 128b/130b coding, about 8 GB/s a direction; about 1 us a transfer for a DMA's doorbell
# write, descriptor fetch and completion.
HOST_LINK = LinkConfig(bytes_per_s=8e9, latency_s=1e-6)

DEFAULT = HwConfig()

PRESETS: dict[str, HwConfig] = {
    "default": DEFAULT,
    # The near-fp32 reference mode the FPGA backend's conformance tests run in.
    "ref16": replace(DEFAULT, mant_bits=16, acc_bits=63),
    "small": replace(DEFAULT, rows=4, cols=4, block=4, acc_bits=32),
    "large": replace(DEFAULT, rows=32, cols=32),
    # ms-fp8-like: a sign and a few mantissa bits, blocks of 16.
    "msfp8": replace(DEFAULT, mant_bits=3, acc_bits=32),
}


MVU_DEFAULT = MvuConfig()  # 256 MACs and 8 MiB of weights, as the default 16x16 systolic array

MVU_PRESETS: dict[str, MvuConfig] = {
    "small": MVU_DEFAULT,
    # Small enough that its RTL simulates thousands of products a second in tests.
    "tiny": replace(MVU_DEFAULT, tiles=2, dpes=2, lanes=4, block=4, acc_bits=32, tile_mem_bytes=2**10,
                    max_k=64, max_m=64),
    # Brainwave on a Stratix 10 GX 2800 (Fowers et al., ISCA 2018): 6 tile engines of 400
    # dot-product engines of 40 lanes, 96,000 MACs at 250 MHz (48 TFLOPS peak), the
    # chip's 11,721 M20K memories (20 Kbit each, 240 Mbit) shared by the tile engines.
    # Blocks of 8 divide the 40 lanes (MSFP's blocks of 16 are two hardware blocks).
    "brainwave": replace(MVU_DEFAULT, tiles=6, dpes=400, lanes=40, block=8,
                         tile_mem_bytes=11_721 * 20 * 1024 // 8 // 6, max_k=16384, max_m=16384),
}


def mvu_preset(name: str) -> MvuConfig:
    """Look up a matrix-vector unit preset by name; the error lists the known names."""
    try:
        return MVU_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown mvu preset {name!r}; known: {', '.join(sorted(MVU_PRESETS))}") from None


def preset(name: str) -> HwConfig:
    """Look up a preset by name; the error lists the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown hw preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
