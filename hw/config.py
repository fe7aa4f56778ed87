"""The one hardware configuration of the simulated systolic array.

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

__all__ = ["HwConfig", "DEFAULT", "PRESETS", "preset"]

# Limits of what the RTL and the golden model support. acc_bits stops at 63 so that
# the golden model's int64 arithmetic (a sum of two accumulators) cannot overflow.
_MAX_DIM = 64
_MANT_RANGE = (2, 16)
_EXP_RANGE = (2, 8)
_MAX_ACC_BITS = 63


@dataclass(frozen=True)
class HwConfig:
    """Parameters of one systolic array; checked when made."""

    rows: int = 16  # PE rows = reduction (K) length of a weight tile
    cols: int = 16  # PE columns = output (N) width of a weight tile
    mant_bits: int = 8  # operand mantissa width, sign included
    exp_bits: int = 8  # shared-exponent width, two's complement
    block: int = 16  # values per shared exponent, along K; divides rows
    acc_bits: int = 48  # accumulator width, two's complement, saturating
    clock_hz: float = 250e6  # the modelled FPGA clock, for time estimates
    weight_mem_bytes: int = 8 * 2**20  # on-chip weight memory (pinned weights)

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "mant_bits", "exp_bits", "block", "acc_bits", "weight_mem_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"HwConfig.{name} must be an int, got {value!r}")
        for name in ("rows", "cols"):
            if not 1 <= getattr(self, name) <= _MAX_DIM:
                raise ValueError(f"HwConfig.{name} must be in 1..{_MAX_DIM}, got {getattr(self, name)}")
        if not _MANT_RANGE[0] <= self.mant_bits <= _MANT_RANGE[1]:
            raise ValueError(f"HwConfig.mant_bits must be in {_MANT_RANGE}, got {self.mant_bits}")
        if not _EXP_RANGE[0] <= self.exp_bits <= _EXP_RANGE[1]:
            raise ValueError(f"HwConfig.exp_bits must be in {_EXP_RANGE}, got {self.exp_bits}")
        if self.block < 1 or self.rows % self.block:
            raise ValueError(f"HwConfig.block ({self.block}) must divide rows ({self.rows})")
        # The right shift clamps at acc_bits - 1, which rounds correctly only if a
        # block sum has fewer bits than that (see golden.align).
        if not self.psum_bits + 1 <= self.acc_bits <= _MAX_ACC_BITS:
            raise ValueError(
                f"HwConfig.acc_bits must be in {self.psum_bits + 1}..{_MAX_ACC_BITS} "
                f"(a block sum needs {self.psum_bits} bits), got {self.acc_bits}"
            )
        if not self.clock_hz > 0:
            raise ValueError(f"HwConfig.clock_hz must be positive, got {self.clock_hz}")
        if self.weight_mem_bytes <= 0:
            raise ValueError(f"HwConfig.weight_mem_bytes must be positive, got {self.weight_mem_bytes}")

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
    def n_blocks(self) -> int:
        """Exponent blocks per array column (and per input vector)."""
        return self.rows // self.block

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

    # -- sizes --------------------------------------------------------------------
    @property
    def macs(self) -> int:
        """Multiply-accumulate units (PEs) in the array."""
        return self.rows * self.cols

    @property
    def weight_bits(self) -> float:
        """Storage per weight in the weight memory: a mantissa plus its share of an exponent."""
        return self.mant_bits + self.exp_bits / self.block

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


def preset(name: str) -> HwConfig:
    """Look up a preset by name; the error lists the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown hw preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
