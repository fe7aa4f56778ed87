"""The simulated FPGA's instruction set: what the compiler emits and the runtime executes.

Brainwave's NPU ran one thread of coarse instructions: a matrix-vector multiply covers
a whole layer, vector instructions apply element-wise functions, and the weights are
pinned on chip before the first request. Ours is the same shape:

* **Storage.** *Weight memory* holds pinned weight tiles in the array's
  block-floating-point format (``HwConfig.weight_mem_bytes``; a model that does not fit
  is refused). *Vector memory* holds named fp32 tensors ("registers": the ONNX tensor
  names), written once per request; constants (biases, folded scales) are pinned there.
* **Prologue** (run once, at model load): ``PinWeights`` and ``PinConst``.
* **Body** (run per request, in order, single-threaded):

  ==============  =====================================================================
  ``Recv``         host -> device: a request input lands in a register
  ``Send``         device -> host: a register is returned as a request output
  ``MatMul``       the systolic array: ``dst[g] = src[g] @ W[g]`` for each group ``g``;
                   ``src`` is quantised to the layer's block format on the way in,
                   every (rows x cols) weight tile runs as one array tile over all
                   ``T`` vectors, K-tiles are summed in the accumulation buffer
                   (float64) and the result is rounded once to fp32
  ``Im2Col``       address generator: convolution patches as matrix rows
  ``Unary``        element-wise: relu, sigmoid, tanh, neg, identity, rsqrt
  ``Binary``       element-wise with broadcasting: add, sub, mul
  ``Pool``         max / average pooling windows (global pooling is one window)
  ``Softmax``      along one axis (max, exp and sum, divide: three passes)
  ``Move``         a layout change: reshape (free: addressing only) or transpose
  ``Slice``        part of a register along one axis (LSTM/GRU gates)
  ``Concat``       registers joined along one axis (LSTM/GRU outputs over time)
  ``HostCall``     a graph partition the device does not support, run on the host
                   (onnxruntime); its inputs and outputs cross the host link
  ``AccStats``     over several devices: a row slice's accumulator-exponent statistics
  ==============  =====================================================================

Every instruction's cost is a formula of the hardware config (``backends.fpga.cycles``);
the matrix unit's is ``hw.cycles``'s tile count, which the RTL's counters match.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Union

import numpy as np

Shape = tuple[int, ...]


@dataclass(frozen=True)
class WeightTiles:
    """One pinned weight matrix, cut into array tiles (see ``backends.fpga.operands``).

    ``mant``: (G, nk, nn, rows, cols) mantissas; ``exp``: (G, nk, nn, n_blocks, cols)
    block exponents. ``k``/``n``: the unpadded reduction and output sizes per group.
    """

    mant: np.ndarray
    exp: np.ndarray
    k: int
    n: int

    @property
    def tiles(self) -> int:
        g, nk, nn = self.mant.shape[:3]
        return g * nk * nn

    @cached_property
    def mant_f64(self) -> np.ndarray:
        """The mantissas as float64, made once: the golden engine's exact BLAS operand."""
        return self.mant.astype(np.float64)


@dataclass(frozen=True)
class MvuWeights:
    """One pinned weight matrix for the matrix-vector unit, one row per output.

    ``mant``: (G, N, Kp) mantissas; ``exp``: (G, N, Kp/block) block exponents
    (``Kp``: K padded to whole input words). ``shape``: how the MVU runs each group's
    product (``hw.mvu.layout.Shape``: split of the tile engines, passes, words).
    """

    mant: np.ndarray
    exp: np.ndarray
    k: int
    n: int
    shape: Any
    # Each group's mantissas as the golden model's exact float64 BLAS operand
    # (``hw.mvu.golden.weight_operand``), made once with the weights; derived, so a
    # compiled artefact does not store it (``backends.fpga.artifact``).
    blas_operands: tuple[np.ndarray, ...] = field(repr=False, default=(), metadata={"derived": True})

    @property
    def words(self) -> int:
        """Weight-memory words the matrix takes in each tile engine."""
        return self.mant.shape[0] * self.shape.words


# -- prologue ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PinWeights:
    slot: str
    tiles: WeightTiles | MvuWeights = field(repr=False)
    fmt: str  # the layer's format ("fp32": the array's own widest encoding)


@dataclass(frozen=True)
class PinConst:
    dst: str
    value: np.ndarray = field(repr=False)


# -- body -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recv:
    dst: str
    name: str  # the request input
    shape: Shape


@dataclass(frozen=True)
class Send:
    src: str
    name: str  # the request output
    shape: Shape


@dataclass(frozen=True)
class MatMul:
    """``dst (G, T, N) = src (G, T, K) @ W (G, K, N)``.

    ``slot`` names pinned weights; or ``wsrc`` names a register holding W (G, K, N)
    that is encoded and streamed into the array at run time (a product of two
    activations, as in attention or an ONNX MatMul of two inputs).
    """

    dst: str
    src: str
    fmt: str  # activation (and dynamic weight) format
    groups: int
    t: int  # vectors per group
    k: int
    n: int
    out_shape: Shape = ()  # dst is reshaped to this (free)
    slot: str | None = None
    wsrc: str | None = None
    # Batch broadcasting (ONNX MatMul): (shape as stored, shape streamed), or None.
    src_bcast: tuple[Shape, Shape] | None = None
    w_bcast: tuple[Shape, Shape] | None = None
    # A slice of one product's outputs (rows of the MVU's matrix), over several devices:
    # the ``AccStats`` registers of every slice of it, in order. The slice accumulates at
    # the exponent the rule picks for the whole product, so its outputs are the whole's.
    acc: tuple[str, ...] = ()
    whole_n: int = 0  # a row slice's whole product's outputs (its weights keep the whole's K-split)


@dataclass(frozen=True)
class AccStats:
    """``dst (T, 2)``: what the accumulator-exponent rule reads of the products of
    ``src`` with the row slice pinned at ``slot`` (``hw.mvu.golden.slice_stats``): every
    slice's statistics together give the whole product's exponent. The block sums are
    the product's own; the statistics are what the devices exchange (16 bytes a vector)."""

    dst: str
    src: str
    slot: str
    fmt: str
    t: int
    k: int


@dataclass(frozen=True)
class ConvGeometry:
    """An N-d convolution's index arithmetic (ONNX semantics, pads resolved)."""

    in_shape: Shape  # (N, C, *spatial)
    kernel: Shape
    strides: Shape
    pads: Shape  # begins then ends, as ONNX
    dilations: Shape
    groups: int
    out_spatial: Shape

    @property
    def patch(self) -> int:
        """Reduction length per group: (C / groups) * prod(kernel)."""
        return self.in_shape[1] // self.groups * int(np.prod(self.kernel))

    @property
    def vectors(self) -> int:
        return self.in_shape[0] * int(np.prod(self.out_spatial))


@dataclass(frozen=True)
class Im2Col:
    """``dst (G, T, K)``: the patches of ``src`` (N, C, *spatial) for each group."""

    dst: str
    src: str
    geom: ConvGeometry


UNARY = ("relu", "sigmoid", "tanh", "neg", "identity", "rsqrt")
BINARY = ("add", "sub", "mul")


@dataclass(frozen=True)
class Unary:
    kind: str  # one of UNARY
    dst: str
    src: str
    size: int


@dataclass(frozen=True)
class Binary:
    kind: str  # one of BINARY
    dst: str
    a: str
    b: str
    size: int  # elements of the result


@dataclass(frozen=True)
class Softmax:
    """``dst = softmax(src.reshape(pre), axis).reshape(shape)`` (pre: opset < 13's 2-D view)."""

    dst: str
    src: str
    axis: int
    shape: Shape
    pre: Shape | None = None


@dataclass(frozen=True)
class PoolGeometry:
    in_shape: Shape  # (N, C, *spatial)
    kernel: Shape
    strides: Shape
    pads: Shape  # begins then ends; ceil_mode already turned into extra end padding
    dilations: Shape
    out_spatial: Shape
    count_include_pad: bool  # average pooling only
    real_ends: Shape  # end pads the ONNX attributes asked for (the rest is ceil_mode's)


@dataclass(frozen=True)
class Pool:
    kind: str  # "max" | "avg"
    dst: str
    src: str
    geom: PoolGeometry


@dataclass(frozen=True)
class Move:
    """A layout change: ``dst = src.reshape(pre).transpose(perm).reshape(shape)``;
    without ``perm`` a plain reshape (free: the data does not move)."""

    dst: str
    src: str
    shape: Shape
    perm: tuple[int, ...] | None = None
    pre: Shape | None = None


@dataclass(frozen=True)
class Slice:
    dst: str
    src: str
    axis: int
    start: int
    stop: int
    size: int  # elements of the result
    contiguous: bool = False  # one range of the source's memory: addressing only, no move


@dataclass(frozen=True)
class Concat:
    dst: str
    srcs: tuple[str, ...]
    axis: int
    size: int


@dataclass(frozen=True)
class HostCall:
    """Run host partition ``part`` (an ONNX model) on the host: ``srcs`` in, ``dsts`` out."""

    part: int
    srcs: tuple[str, ...]
    dsts: tuple[str, ...]
    in_bytes: int
    dst_bytes: tuple[int, ...]  # each output's size (what it costs to move between devices)

    @property
    def out_bytes(self) -> int:
        return sum(self.dst_bytes)


Instruction = Union[Recv, Send, MatMul, Im2Col, Unary, Binary, Softmax, Pool, Move, Slice, Concat, HostCall,
                    AccStats]


@dataclass
class Program:
    """A compiled model: pinned state, the per-request instruction chain, host partitions."""

    prologue: list[PinWeights | PinConst]
    body: list[Instruction]
    host_parts: list[Any]  # onnx.ModelProto per HostCall.part
    inputs: dict[str, str]  # request input name -> register
    outputs: dict[str, str]  # request output name -> register
    # Over several devices: which device holds each matrix and runs each instruction
    # (``backends.fpga.partition.Assignment``); None: one device runs it all.
    assignment: Any = None

    def listing(self) -> str:
        """A readable dump, one instruction per line (for debugging and the docs)."""
        return "\n".join(repr(i) for i in [*self.prologue, *self.body])
