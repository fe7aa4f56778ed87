"""The lowering context: what a lowering function (``lower_matrix``, ``lower_vector``,
``lower_rnn``) sees and emits into, and ``Unsupported``, how it refuses a node.

A module of its own so that the lowerings and the compiler that drives them both
import it, and neither imports the other (the compiler imports the lowerings' table).
"""
from __future__ import annotations

import numpy as np

from backends.fpga import isa
from backends.fpga.graph import Graph


class Unsupported(Exception):
    """This node cannot run on the device (the message says why); it goes to the host."""


class Ctx:
    """What a lowering function sees: the graph and the emitters (lowering knows no engine)."""

    def __init__(self, graph: Graph, slices: int = 1):
        self.g = graph
        self.body: list = []
        self.consts_pinned: dict[str, isa.PinConst] = {}
        self.weights: dict[str, tuple[np.ndarray, str]] = {}  # slot -> (W (G, K, N), format)
        self.skip: set[int] = set()  # id() of nodes folded into an earlier one
        self._n = 0
        # Row splits (``backends.fpga.rowsplit``): large products' outputs are cut into
        # ``slices`` row slices, slice j on device j. ``on_slice``: the slice of each
        # register whose instruction must run on that slice's device (a gathered copy, a
        # slice's statistics); ``slot_slice``: the slice each sliced matrix belongs to.
        self.slices = slices
        self.on_slice: dict[str, int] = {}
        self.slot_slice: dict[str, int] = {}

    # -- tensors -------------------------------------------------------------------------
    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self.g.shapes:
            raise Unsupported(f"the shape of {name!r} is not known at compile time")
        return tuple(self.g.shapes[name])

    def const(self, name: str) -> np.ndarray | None:
        return self.g.consts.get(name) if name else None

    def operand(self, name: str) -> str:
        """The register holding tensor ``name``; a constant is pinned in vector memory."""
        value = self.g.consts.get(name)
        if value is not None:
            return self.pin_const(value, name)
        return name

    def pin_const(self, value: np.ndarray, name: str | None = None) -> str:
        name = name or self.tmp("const")
        if name not in self.consts_pinned:
            self.consts_pinned[name] = isa.PinConst(name, np.asarray(value, np.float32))
        return name

    def tmp(self, hint: str) -> str:
        self._n += 1
        return f"{hint}#{self._n}"

    def emit(self, ins) -> None:
        self.body.append(ins)

    # -- weights ----------------------------------------------------------------------
    def fmt(self, weight: str | None) -> str:
        """The format a layer computes in: its weight's, else fp32 (the widest encoding)."""
        return self.g.formats.get(weight, "fp32") if weight else "fp32"

    def pin_weights(self, w: np.ndarray, fmt: str, hint: str) -> str:
        slot = self.tmp(f"W:{hint}")
        self.weights[slot] = (np.asarray(w, np.float64), fmt)
        return slot

    def find_bn(self, out: str):
        """If ``out``'s only consumer is an inference BatchNormalization with constant
        parameters, return (node, scale, shift) per channel; else None."""
        users = self.g.consumers(out)
        if len(users) != 1 or out in self.g.outputs or users[0].op_type != "BatchNormalization":
            return None
        bn = users[0]
        params = [self.const(i) for i in bn.input[1:5]]
        attrs = self.g.attrs(bn)
        if any(p is None for p in params) or attrs.get("training_mode", 0) or len([o for o in bn.output if o]) != 1:
            return None
        scale, bias, mean, var = (p.astype(np.float64) for p in params)
        s = scale / np.sqrt(var + attrs.get("epsilon", 1e-5))
        return bn, s, bias - mean * s
