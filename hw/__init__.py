"""The simulated FPGA's matrix engines: a block-floating-point systolic array, and
Brainwave's matrix-vector unit in :mod:`hw.mvu` (golden model, layout, cycle model, RTL).

* :mod:`hw.config`  -- the one hardware configuration (:class:`~hw.config.HwConfig`, :class:`~hw.config.MvuConfig`)
* :mod:`hw.golden`  -- the numpy golden model (the specification; the FPGA backend runs it)
* :mod:`hw.cycles`  -- the cycle model
* :mod:`hw.bfp`     -- encode/decode floats in the operand format
* :mod:`hw.build`   -- Verilator builds, cached by content hash
* :mod:`hw.sim`     -- the Verilated model through its C ABI (ctypes)
* :mod:`hw.pysim`   -- the same RTL clocked from Python with pyverilator (tests, traces)

See ``hw/README.md`` for the dataflow and the exact arithmetic.
"""
from hw.config import DEFAULT, PRESETS, HwConfig, preset

__all__ = ["HwConfig", "DEFAULT", "PRESETS", "preset"]
