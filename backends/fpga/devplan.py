"""What each device process holds and which registers it exchanges, from the placement.

A program pinned over K devices (``isa.Program.assignment``: the device of each body
instruction) becomes K device programs. Each holds only its own slice: the pinned
matrices its products read, the constants its instructions read, the host partitions
it calls, and its body instructions in program order. A register produced on one
device and read on another is sent once, right after it is produced, to each device
that reads it (the cycle model's ``_Schedule.fetch`` charges the same transfers); a
request input goes to the device its ``Recv`` is placed on, and each ``Send``'s device
returns that output to the host. Nothing here knows about row or whole-matrix splits:
only the placement, so any assignment the partitioner makes runs unchanged.

Because every device runs its instructions in program order and sends each register as
soon as it is made, a register a device waits for was made by an earlier instruction
on another device, which never waits on a later one: the exchange cannot deadlock.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from backends.fpga import artifact, isa
from backends.fpga.cycles import reads, writes


@dataclass(frozen=True)
class DevicePlan:
    """One device's part of a program; per-instruction tuples align with ``body``."""

    device: int
    body: tuple[int, ...]  # indices into the program's body, in order
    receive: tuple[tuple[str, ...], ...]  # registers to take from peers before each instruction
    send: tuple[tuple[tuple[str, tuple[int, ...]], ...], ...]  # after each: (register, devices reading it)
    inputs: tuple[str, ...]  # request inputs the host sends it
    outputs: tuple[str, ...]  # request outputs it returns
    slots: tuple[str, ...]  # the pinned matrices it holds
    consts: tuple[str, ...]  # the constants it holds
    parts: tuple[int, ...]  # the host partitions it calls (its HostCall.part i is parts[i])

    @property
    def peers(self) -> tuple[int, ...]:
        """The devices it sends registers to."""
        return tuple(sorted({d for sends in self.send for _, to in sends for d in to}))


def plans(program: isa.Program) -> list[DevicePlan]:
    """Each device's plan (one device when the program has no assignment)."""
    body = program.body
    a = program.assignment
    devices, placement = (1, (0,) * len(body)) if a is None else (a.devices, a.placement)
    consts = {p.dst for p in program.prologue if isinstance(p, isa.PinConst)}
    producer: dict[str, int] = {}  # register -> index of the instruction that writes it
    held: list[set[str]] = [set() for _ in range(devices)]  # registers each device has (made or received)
    receive: list[list[str]] = [[] for _ in body]
    send: list[dict[str, list[int]]] = [{} for _ in body]
    for i, ins in enumerate(body):
        dev = placement[i]
        for reg in reads(ins):
            if reg in consts or reg in held[dev]:
                continue
            receive[i].append(reg)
            send[producer[reg]].setdefault(reg, []).append(dev)
            held[dev].add(reg)
        for reg in writes(ins):
            producer[reg] = i
            held[dev].add(reg)
    out = []
    for dev in range(devices):
        mine = tuple(i for i in range(len(body)) if placement[i] == dev)
        instrs = [body[i] for i in mine]
        out.append(DevicePlan(
            device=dev, body=mine,
            receive=tuple(tuple(receive[i]) for i in mine),
            send=tuple(tuple((r, tuple(d)) for r, d in send[i].items()) for i in mine),
            inputs=tuple(ins.name for ins in instrs if isinstance(ins, isa.Recv)),
            outputs=tuple(ins.name for ins in instrs if isinstance(ins, isa.Send)),
            # Any instruction that reads pinned weights (a product, a row slice's statistics).
            slots=tuple(dict.fromkeys(ins.slot for ins in instrs if getattr(ins, "slot", None))),
            consts=tuple(dict.fromkeys(r for ins in instrs for r in reads(ins) if r in consts)),
            parts=tuple(dict.fromkeys(ins.part for ins in instrs if isinstance(ins, isa.HostCall)))))
    return out


def device_program(program: isa.Program, plan: DevicePlan) -> isa.Program:
    """The program one device runs: its slice of the prologue, its instructions, its host
    partitions (renumbered in its own order)."""
    pins = {p.slot: p for p in program.prologue if isinstance(p, isa.PinWeights)}
    consts = {p.dst: p for p in program.prologue if isinstance(p, isa.PinConst)}
    part = {old: new for new, old in enumerate(plan.parts)}
    body = [dataclasses.replace(ins, part=part[ins.part]) if isinstance(ins, isa.HostCall) else ins
            for ins in (program.body[i] for i in plan.body)]
    sends = {ins.name: ins.src for ins in body if isinstance(ins, isa.Send)}
    return isa.Program([*(pins[s] for s in plan.slots), *(consts[c] for c in plan.consts)], body,
                       [program.host_parts[p] for p in plan.parts], {}, sends)


# -- a device program on the wire ----------------------------------------------------------
def to_wire(cfg, program: isa.Program, plan: DevicePlan) -> tuple[dict, list[tuple[str, np.ndarray]]]:
    """A device program as (JSON description, named arrays): what ``LOAD`` carries. The
    program is walked as the compiled artefact is (``artifact.encode_program``)."""
    tree, arrays = artifact.encode_program(cfg, program)
    return ({"program": tree, "plan": dataclasses.asdict(plan), "arrays": len(arrays)},
            [(f"a{i}", a) for i, a in enumerate(arrays)])


def from_wire(meta: dict, arrays: dict[str, np.ndarray]) -> tuple[object, isa.Program, DevicePlan]:
    """``to_wire``'s inverse: (config, device program, plan)."""
    cfg, program = artifact.decode_program(meta["program"], [arrays[f"a{i}"] for i in range(meta["arrays"])])
    return cfg, program, DevicePlan(**{k: _tuples(v) for k, v in meta["plan"].items()})


def _tuples(data):
    """JSON's lists made tuples again (a plan's fields are tuples)."""
    return tuple(_tuples(v) for v in data) if isinstance(data, list) else data
