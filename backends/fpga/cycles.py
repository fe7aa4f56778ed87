"""Cycles per instruction, and a program's schedule: the device-time model of a compiled program.

Static: at batch 1 every shape is known at compile time, so a program's cycles are
computed once at load and reported with each request.

Three units work at once on a device: the matrix engine (the systolic array or the MVU), the
vector unit, and the host link. One thread of instructions issues in order; an
instruction starts when the one before it has started, its unit has room, and its
operands are there (a scoreboard). Element-wise vector instructions (``Unary``,
``Binary``) *chain*: they start on the first elements of an operand that a matrix
product or another vector instruction is still producing and finish one pipeline
depth after it, as Brainwave's multifunction units take the matrix-vector unit's
output with no round trip through memory. So an LSTM gate after its product costs
its stages' depth, not another pass over the vector.

* ``MatMul``, systolic array: each weight tile is loaded into the array
  (``hw.cycles.load_cycles``) and then streams all ``T`` vectors
  (``hw.cycles.tile_cycles``): the RTL's own counts, checked in RTL mode. A run-time
  weight operand is first encoded by the vector unit.
* ``MatMul``, MVU: ``T`` products (``hw.mvu.cycles.product_cycles``, at the split of
  the tile engines over K that ``best_shape`` picks) per group; a run-time weight
  operand is first written into the weight memories (``write_cycles``). The first
  pass's outputs are there after one pass; all of them at the end.
* Vector instructions: ``ceil(elements / lanes)`` cycles on the unit (one lane per
  array column; the MVU's unit takes a whole pass a cycle), results ``latency``
  cycles later. Pooling reads every window element; softmax makes three passes; a
  reshape, and a slice of a contiguous range, are addressing only (free).
* Host link (``Recv``, ``Send``, ``HostCall`` transfers): ``hw.config.HOST_LINK``'s
  latency per transfer plus bytes at its bandwidth (PCIe gen3 x8), in device cycles.
  Host compute time is not device time and is not counted.

A model pinned over several devices (``backends.fpga.partition``) gives each
instruction a device; each device has the three units above and issues its own
instructions in order. The first time an instruction reads a register that another
device produced, the register crosses the network (``hw.config.LinkConfig``): a
transfer on the producer's port, ``ceil(bytes / bandwidth)`` busy cycles streamed
behind the producer (from its first elements, done no earlier than its last) plus a
hop's latency; the copy then stays.
A register that device only encodes for products crosses in their encoding
(``wire_bytes``), anything else in fp32. A row slice's ``AccStats`` costs a vector
pass of its two figures: its block sums are the product's own, and choosing the
exponent from them is not charged on one device either; what a row split adds is the
exchange of those figures. Constants are pinned on every device.

Every figure the model uses is in ``hw.config``.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from hw import cycles as hw_cycles
from hw.config import DEVICE_LINK, HOST_LINK, HwConfig, LinkConfig, MvuConfig
from hw.mvu import cycles as mvu_cycles

from backends.fpga import isa
from backends.fpga.options import layer_format

Config = HwConfig | MvuConfig
_ELEMENTWISE = (isa.Unary, isa.Binary)


@dataclass(frozen=True)
class Cost:
    cycles: int  # the instruction alone: its unit's busy cycles plus its latency
    macs: int = 0  # useful multiply-accumulates (unpadded)


@dataclass(frozen=True)
class Timing:
    unit: str  # "matrix" | "vector" | "host" (the host link) | "" (free: addressing only)
    busy: int  # cycles the unit is taken
    latency: int = 0  # from the unit's last busy cycle to the last result
    first: int | None = None  # cycles from the start to the first results (None: with the last)
    macs: int = 0


def lanes(cfg: Config) -> int:
    """Vector-unit lanes: one per array column; the MVU's: a whole pass of outputs."""
    return cfg.vector_lanes if isinstance(cfg, MvuConfig) else cfg.cols


def vector_cycles(cfg: Config, elements: int) -> int:
    """One vector instruction over ``elements``, alone: busy cycles plus its depth."""
    return math.ceil(elements / lanes(cfg)) + cfg.vector_latency


def link_cycles(cfg: Config, nbytes: int) -> int:
    """One host-link transfer of ``nbytes``."""
    return math.ceil(HOST_LINK.seconds(nbytes) * cfg.clock_hz)


def matmul_tiles(cfg: HwConfig, ins: isa.MatMul) -> int:
    return ins.groups * math.ceil(ins.k / cfg.rows) * math.ceil(ins.n / cfg.cols)


def mvu_shape(cfg: MvuConfig, ins: isa.MatMul):
    """The MVU's way of running ``ins``' products (the one the compiler pinned for)."""
    return mvu_cycles.best_shape(cfg, ins.n, ins.k, ins.whole_n)


def matmul_cycles(cfg: Config, ins: isa.MatMul) -> int:
    """What the matrix engine itself spends: the figure the RTL's counters report."""
    if isinstance(cfg, MvuConfig):
        return ins.groups * ins.t * mvu_cycles.product_cycles(mvu_shape(cfg, ins))
    return matmul_tiles(cfg, ins) * (hw_cycles.load_cycles(cfg) + hw_cycles.tile_cycles(cfg, ins.t))


def _matmul_timing(cfg: Config, ins: isa.MatMul) -> Timing:
    macs = ins.groups * ins.t * ins.k * ins.n
    busy = matmul_cycles(cfg, ins)
    if isinstance(cfg, MvuConfig):
        s = mvu_shape(cfg, ins)
        extra = ins.groups * mvu_cycles.write_cycles(s) + vector_cycles(cfg, ins.groups * ins.k * ins.n) \
            if ins.wsrc else 0
        first = extra + 1 + s.c + mvu_cycles.PIPELINE if ins.groups * ins.t == 1 else None
        return Timing("matrix", busy + extra, 0, first, macs)
    extra = vector_cycles(cfg, ins.groups * ins.k * ins.n) if ins.wsrc else 0
    return Timing("matrix", busy + extra, 0, None, macs)


def timing(cfg: Config, ins: isa.Instruction) -> Timing:
    """How one body instruction uses the device."""
    vec = lambda n: Timing("vector", math.ceil(n / lanes(cfg)), cfg.vector_latency)  # noqa: E731
    if isinstance(ins, isa.MatMul):
        return _matmul_timing(cfg, ins)
    if isinstance(ins, isa.Im2Col):
        g = ins.geom
        return vec(g.groups * g.vectors * g.patch)
    if isinstance(ins, isa.Slice):
        return Timing("", 0) if ins.contiguous else vec(ins.size)
    if isinstance(ins, (isa.Unary, isa.Binary, isa.Concat)):
        return vec(ins.size)
    if isinstance(ins, isa.Softmax):  # max, exp-and-sum, divide
        t = vec(int(np.prod(ins.shape)))
        return Timing("vector", 3 * t.busy, 3 * t.latency)
    if isinstance(ins, isa.Pool):
        g = ins.geom
        out = g.in_shape[0] * g.in_shape[1] * int(np.prod(g.out_spatial))
        return vec(out * int(np.prod(g.kernel)))
    if isinstance(ins, isa.Move):
        return Timing("", 0) if ins.perm is None else vec(int(np.prod(ins.shape)))
    if isinstance(ins, (isa.Recv, isa.Send)):
        return Timing("host", link_cycles(cfg, 4 * int(np.prod(ins.shape))))
    if isinstance(ins, isa.HostCall):
        return Timing("host", link_cycles(cfg, ins.in_bytes) + link_cycles(cfg, ins.out_bytes))
    if isinstance(ins, isa.AccStats):  # two figures of the product's own block sums (module doc)
        return vec(2 * ins.t)
    raise TypeError(f"no cost for {type(ins).__name__}")


def cost(cfg: Config, ins: isa.Instruction) -> Cost:
    """Cycles (and useful MACs) of one body instruction run alone."""
    t = timing(cfg, ins)
    return Cost(t.busy + t.latency, t.macs)


@dataclass(frozen=True)
class ProgramCost:
    cycles: int  # the whole request, on every device, host-link and device-link transfers included
    macs: int
    matmul_cycles: int  # the matrix engines' share, comparable with the RTL's counters
    compute_cycles: int  # cycles in which some device's matrix engine or vector unit has work in flight
    devices: int = 1  # devices the model is pinned over (idle ones included)
    device_cycles: tuple[int, ...] = ()  # each device's computing cycles, as compute_cycles
    link_cycles: int = 0  # cycles in which some transfer between devices is in flight

    def seconds(self, cfg: Config) -> float:
        return self.cycles / cfg.clock_hz

    def utilisation(self, cfg: Config) -> float:
        """Useful MACs over what the engines of all the devices could have done while
        they computed (cycles in which only a link works, such as a request's input
        arriving and its outputs leaving, are the link's time, not the engines')."""
        return self.macs / (self.devices * cfg.macs * self.compute_cycles) if self.compute_cycles else 0.0

    def end_to_end_utilisation(self, cfg: Config) -> float:
        """The same over the whole request, host-link transfers included."""
        return self.macs / (self.devices * cfg.macs * self.cycles) if self.cycles else 0.0


def reads(ins) -> tuple[str, ...]:
    if isinstance(ins, isa.MatMul):
        return (ins.src,) + ((ins.wsrc,) if ins.wsrc else ()) + ins.acc
    if isinstance(ins, isa.Binary):
        return (ins.a, ins.b)
    if isinstance(ins, (isa.Concat, isa.HostCall)):
        return tuple(ins.srcs)
    if isinstance(ins, isa.Recv):
        return ()
    return (ins.src,)


def writes(ins) -> tuple[str, ...]:
    if isinstance(ins, isa.HostCall):
        return tuple(ins.dsts)
    if isinstance(ins, isa.Send):
        return ()
    return (ins.dst,)


def _written_bytes(ins) -> tuple[int, ...]:
    """The size of each register ``ins`` writes (fp32), in ``writes``' order."""
    if isinstance(ins, isa.HostCall):
        return ins.dst_bytes
    if isinstance(ins, isa.Send):
        return ()
    if isinstance(ins, isa.AccStats):
        return (16 * ins.t,)  # two float64 figures a vector
    if isinstance(ins, isa.MatMul):
        n = ins.groups * ins.t * ins.n
    elif isinstance(ins, isa.Im2Col):
        n = ins.geom.groups * ins.geom.vectors * ins.geom.patch
    elif isinstance(ins, isa.Pool):
        n = ins.geom.in_shape[0] * ins.geom.in_shape[1] * int(np.prod(ins.geom.out_spatial))
    elif isinstance(ins, (isa.Recv, isa.Softmax, isa.Move)):
        n = int(np.prod(ins.shape))
    else:
        n = ins.size
    return (4 * n,)


class _Schedule:
    """The scoreboard of ``program_cost``: when each register is on each device, when
    each unit is free. Each device has its own matrix engine, vector unit and host link;
    each sends to the others over its own network port (``LinkConfig``)."""

    def __init__(self, cfg: Config, link: LinkConfig, wire: dict[tuple[str, int], int]):
        self.cfg, self.link, self.wire = cfg, link, wire
        self.first: dict[tuple[str, int], int] = {}  # (register, device) -> cycle its first elements are there
        self.last: dict[tuple[str, int], int] = {}  # (register, device) -> cycle all of it is there
        self.home: dict[str, tuple[int, int]] = {}  # register -> (device that produced it, bytes)
        self.free: dict[tuple[str, int], int] = defaultdict(int)  # (unit, device) -> cycle it is free
        self.end = self.macs = self.mm = 0
        self.issue: dict[int, int] = defaultdict(int)  # device -> when its last instruction started
        self.spans: dict[int, list[tuple[int, int]]] = defaultdict(list)  # device -> its computing instructions
        self.hops: list[tuple[int, int]] = []  # (start, finish) of every transfer between devices

    def fetch(self, reg: str, dev: int) -> None:
        """Bring ``reg`` to ``dev`` if another device produced it: one transfer over the
        producer's port, streamed behind its producer (from its first elements; its last
        bytes leave once they are made), a hop's latency after (a constant is pinned on
        every device)."""
        if reg not in self.home or (reg, dev) in self.last:
            return
        src, nbytes = self.home[reg]
        nbytes = self.wire.get((reg, dev), nbytes)
        port = ("link", src)
        busy = math.ceil(nbytes / self.link.bytes_per_s * self.cfg.clock_hz)
        hop = math.ceil(self.link.latency_s * self.cfg.clock_hz)
        start = max(self.free[port], self.first[(reg, src)])
        sent = max(start + busy, self.last[(reg, src)])
        self.free[port] = sent
        done = sent + hop
        self.first[(reg, dev)], self.last[(reg, dev)] = min(start + hop + 1, done), done
        self.hops.append((start, done))
        self.end = max(self.end, done)

    def _land(self, ins, dev: int, head: int, finish: int) -> None:
        for d, nbytes in zip(writes(ins), _written_bytes(ins)):
            self.first[(d, dev)], self.last[(d, dev)] = head, finish
            self.home[d] = (dev, nbytes)

    def add(self, ins, dev: int) -> None:
        t = timing(self.cfg, ins)
        srcs = reads(ins)
        for s in srcs:
            self.fetch(s, dev)
        if not t.unit:  # addressing only: the result is its source, there when the source is
            if srcs[0] in self.home:
                self._land(ins, dev, self.first[(srcs[0], dev)], self.last[(srcs[0], dev)])
            return
        chains = isinstance(ins, _ELEMENTWISE)
        ready = max([(self.first if chains else self.last).get((s, dev), 0) for s in srcs], default=0)
        unit = (t.unit, dev)
        start = max(self.issue[dev], self.free[unit], ready)
        done = start + t.busy
        if chains:  # stream behind the producers: done no earlier than their last elements
            done = max(done, max([self.last.get((s, dev), 0) for s in srcs], default=0))
        self.free[unit] = start + t.busy
        finish = done + t.latency
        head = start + t.latency if chains else start + (t.busy if t.first is None else t.first) + t.latency
        self._land(ins, dev, min(head, finish), finish)
        self.issue[dev] = start
        self.end = max(self.end, finish)
        self.macs += t.macs
        if isinstance(ins, isa.MatMul):
            self.mm += matmul_cycles(self.cfg, ins)
        if t.unit != "host":
            self.spans[dev].append((start, finish))


def program_cost(cfg: Config, body: list, placement: tuple[int, ...] = (), devices: int = 1,
                 link: LinkConfig = DEVICE_LINK) -> ProgramCost:
    """Schedule ``body`` on the units (module doc) and total its cycles; ``placement``
    gives each instruction's device (none: all on one) out of ``devices``."""
    placement = placement or (0,) * len(body)
    s = _Schedule(cfg, link, wire_bytes(cfg, body, placement) if devices > 1 else {})
    for ins, dev in zip(body, placement):
        s.add(ins, dev)
    every = [span for spans in s.spans.values() for span in spans]
    return ProgramCost(s.end, s.macs, s.mm, _covered(every), devices,
                       tuple(_covered(s.spans[d]) for d in range(devices)), _covered(s.hops))


def _format_block(fmt: str) -> int:
    """Values of ``fmt`` sharing one scale (1: each its own)."""
    f = layer_format(fmt)
    return f.spec.block_size or 1 if f is not None else 1


def wire_bytes(cfg: Config, body: list, placement: tuple[int, ...]) -> dict[tuple[str, int], int]:
    """The bytes a register takes on the link to a device where it is only encoded for
    products, (register, device) -> bytes: the product's own encoding (``mant_bits`` a
    value and ``exp_bits`` a block), exact because it is what that device's products
    would make of the fp32 values. A part gathered for products (``rowsplit.gather``)
    qualifies when its edges fall on whole blocks of the format and of the engine.
    Every other transfer is fp32."""
    where, size = {}, {}
    readers: dict[str, list[tuple[object, int]]] = defaultdict(list)
    for ins, dev in zip(body, placement):
        for r in reads(ins):
            readers[r].append((ins, dev))
        for d, nbytes in zip(writes(ins), _written_bytes(ins)):
            where[d], size[d] = dev, nbytes // 4

    def encoded_as(reg: str, ins, dev: int) -> set[str] | None:
        """The formats ``ins`` (on ``dev``) encodes ``reg`` in, None: it needs the values."""
        if isinstance(ins, (isa.MatMul, isa.AccStats)) and ins.src == reg and reg not in reads(ins)[1:]:
            return {ins.fmt}
        if not (isinstance(ins, isa.Concat) and ins.axis == -1):
            return None
        offset = sum(size.get(s, 0) for s in ins.srcs[:ins.srcs.index(reg)])
        fmts = set()
        for user, d in readers.get(ins.dst, ()):
            got = encoded_as(ins.dst, user, d) if d == dev else None
            if got is None:
                return None
            fmts |= got
        block = math.lcm(cfg.block, *(_format_block(f) for f in fmts))
        return fmts if fmts and offset % block == 0 and (offset + size[reg] == ins.size or size[reg] % block == 0) \
            else None

    out = {}
    for reg, users in readers.items():
        for dev in {d for _, d in users if reg in where and d != where[reg]}:
            fmts = [encoded_as(reg, ins, d) for ins, d in users if d == dev]
            if all(f is not None for f in fmts) and len(set().union(*fmts)) == 1:
                n = size[reg]
                out[(reg, dev)] = math.ceil((n * cfg.mant_bits + math.ceil(n / cfg.block) * cfg.exp_bits) / 8)
    return out


def _covered(spans: list[tuple[int, int]]) -> int:
    """Cycles in which at least one of ``spans`` is in flight."""
    total, reach = 0, None
    for a, b in sorted(spans):
        if reach is None or a > reach:
            total, reach = total + b - a, b
        elif b > reach:
            total, reach = total + b - reach, b
    return total
