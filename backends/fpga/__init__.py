"""The simulated FPGA backend: ONNX -> instruction program -> block-floating-point array.

``isa`` documents the instruction set; ``compiler`` (with ``lower_*``) compiles a model;
``runtime`` executes it with ``matunit``'s tile engines (golden numpy or Verilated RTL);
``cycles`` is the device-time model.
"""
from backends.fpga.backend import FpgaBackend

__all__ = ["FpgaBackend"]
