"""One model pinned over several devices (issue 18): whole matrices, or row slices.

Brainwave served models too large for one FPGA by pinning them over several that talk
over the datacenter network (its "hardware microservices"). Here, for the
matrix-vector unit, two forms:

* **whole matrices** (a pipeline): each pinned matrix (a ``PinWeights`` slot: a GRU's W
  or R, an MLP's layer) goes whole to one device; the devices hold consecutive runs of
  the matrices in program order, each within its tile engines' ``MvuConfig.mem_words``;
  of the assignments that fit, the one with the fewest modeled cycles;
* **row slices** (``rowsplit``): the model lowered again with its large products' output
  rows cut into K slices, slice j on device j; a matrix too small to cut goes whole to
  the device holding the fewest words.

A product runs on the device holding its weights; a gathered copy or a slice's
statistics on its slice's device; every other instruction (a run-time-weight product
included) where its first operand that is not a constant was produced; a request input
lands on the device of its first reader. ``choose`` takes, on the fewest devices that
hold the model (``devices=auto``) or on K, whichever form the cycle model
(``cycles.program_cost``, transfers between devices included) rates faster; on a tie,
the one on fewer devices. The arithmetic is one device's in both forms, so the outputs
are bit for bit those of one device large enough for every matrix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import islice
from typing import Callable, Iterator

from hw.config import DEVICE_LINK, LinkConfig, MvuConfig

from backends.base import ModelLoadFailed
from backends.fpga import isa
from backends.fpga.cycles import program_cost, reads, writes

# Assignments costed at most (fewer devices are enumerated first): a long chain of
# small layers over many devices has too many ways to cut it to try them all.
MAX_CANDIDATES = 2048


@dataclass(frozen=True)
class Assignment:
    """Where a model's matrices and instructions live, over ``devices`` devices."""

    devices: int  # devices the model is served on (some may hold nothing)
    slots: tuple[str, ...]  # the pinned matrices, in program order
    homes: tuple[int, ...]  # the device each is pinned on
    placement: tuple[int, ...]  # the device each body instruction runs on
    words: tuple[int, ...]  # weight words each device holds, per tile engine
    rows: tuple[str, ...] = ()  # the slots that are row slices (``rowsplit``); none: whole matrices only

    @property
    def form(self) -> str:
        """``"rows"`` (large products' rows split over the devices) or ``"whole"`` (matrices whole)."""
        return "rows" if self.rows else "whole"

    def describe(self) -> str:
        """Which form, and which matrices each device holds, e.g. ``whole matrices: device 0:
        W:W#1 (3 words); device 1: ...; 2 idle`` or ``row split: 14 row slices, slice j on
        device j; device 0: 7 row slices, W:fc6.weight#7 (88 words); ...``."""
        used = sorted(set(self.homes))
        idle = self.devices - len(used)
        tail = [f"{idle} idle"] if idle else []
        if not self.rows:
            held = lambda d: ", ".join(s for s, h in zip(self.slots, self.homes) if h == d)  # noqa: E731
            return "whole matrices: " + "; ".join([f"device {d}: {held(d)} ({self.words[d]} words)" for d in used]
                                                  + tail)
        sliced = set(self.rows)

        def held(d: int) -> str:
            mine = [s for s, h in zip(self.slots, self.homes) if h == d]
            whole = [s for s in mine if s not in sliced]
            return ", ".join([f"{len(mine) - len(whole)} row slices"] + whole)
        return (f"row split: {len(sliced)} row slices, slice j on device j; "
                + "; ".join([f"device {d}: {held(d)} ({self.words[d]} words)" for d in used] + tail))


def place(body: list, homes: dict[str, int], at: dict[str, int] | None = None) -> tuple[int, ...]:
    """The device each instruction of ``body`` runs on (module doc), ``homes`` the
    device of each pinned matrix, ``at`` that of an instruction writing one of its
    registers (a row split's gathered copies and statistics)."""
    at = at or {}
    where: dict[str, int] = {}  # register -> the device that produced it
    inputs: dict[str, int] = {}  # a request input not read yet -> its Recv's index
    out = [0] * len(body)
    for i, ins in enumerate(body):
        if isinstance(ins, isa.Recv):
            inputs[ins.dst] = i
            continue
        srcs = reads(ins)
        if isinstance(ins, isa.MatMul) and ins.slot is not None:
            dev = homes[ins.slot]
        elif writes(ins) and writes(ins)[0] in at:
            dev = at[writes(ins)[0]]
        else:
            dev = next((where[s] for s in srcs if s in where), 0)
        for s in srcs:
            if s in inputs:
                out[inputs.pop(s)] = where[s] = dev
        out[i] = dev
        for d in writes(ins):
            where[d] = dev
    return tuple(out)


def _cuts(words: tuple[int, ...], capacity: int, runs: int, i: int = 0) -> Iterator[tuple[int, ...]]:
    """Every way to cut ``words[i:]`` into ``runs`` consecutive non-empty runs, each
    within ``capacity``: the runs' ends."""
    if runs == 1:
        if sum(words[i:]) <= capacity:
            yield (len(words),)
        return
    total = 0
    for end in range(i + 1, len(words) - runs + 2):
        total += words[end - 1]
        if total > capacity:
            return
        if sum(words[end:]) <= (runs - 1) * capacity:
            yield from ((end,) + rest for rest in _cuts(words, capacity, runs - 1, end))


def assignments(words: tuple[int, ...], capacity: int, devices: int) -> Iterator[tuple[int, ...]]:
    """Each matrix's device, for every assignment of consecutive runs of matrices to at
    most ``devices`` devices of ``capacity`` words; fewer devices first."""
    if not words:
        yield ()
    for runs in range(1, min(devices, len(words)) + 1):
        for ends in _cuts(words, capacity, runs):
            starts = (0,) + ends[:-1]
            yield tuple(d for d, (a, b) in enumerate(zip(starts, ends)) for _ in range(a, b))


def fewest_devices(words: tuple[int, ...], capacity: int) -> int | None:
    """The fewest devices that hold every matrix whole, in order (None: a matrix is
    larger than a device). Filling each device in turn is optimal for consecutive runs."""
    if any(w > capacity for w in words):
        return None
    count, used = 1, 0
    for w in words:
        if used + w > capacity:
            count, used = count + 1, 0
        used += w
    return count


def assign(cfg: MvuConfig, body: list, pins: list[isa.PinWeights], devices: int | None,
           link: LinkConfig = DEVICE_LINK) -> Assignment:
    """The assignment of ``pins`` to ``devices`` devices (None: the fewest that hold
    them) with the fewest modeled cycles; or the model is refused."""
    slots, words = tuple(p.slot for p in pins), tuple(p.tiles.words for p in pins)
    fewest = fewest_devices(words, cfg.mem_words)
    k = devices or fewest
    if fewest is None or fewest > k:
        raise ModelLoadFailed(_refusal(cfg, pins, k if devices else None))

    def cycles(homes: tuple[int, ...]) -> tuple[int, int]:
        return program_cost(cfg, body, place(body, dict(zip(slots, homes))), k, link).cycles, len(set(homes))

    homes = min(islice(assignments(words, cfg.mem_words, k), MAX_CANDIDATES), key=cycles)
    held = tuple(sum(w for w, h in zip(words, homes) if h == d) for d in range(k))
    return Assignment(k, slots, homes, place(body, dict(zip(slots, homes))), held)


# (ctx, host partitions, pins) of the model lowered with its products cut into K row
# slices (K = 1: whole, as lowered for one device); ctx as ``lower_context.Ctx``.
Variant = Callable[[int], tuple]


def choose(cfg: MvuConfig, devices: int | None, variant: Variant, form: str = "auto",
           link: LinkConfig = DEVICE_LINK) -> tuple[object, list, list[isa.PinWeights], Assignment]:
    """The model on ``devices`` MVUs (None: the fewest that hold it in either form), whole
    matrices or row slices (``form``: "whole", "rows" or "auto", whichever has the fewer
    modeled cycles; module doc): the chosen variant's ``(ctx, host partitions, pins,
    assignment)``; or the model is refused."""
    ctx, parts, pins = variant(1)
    if devices == 1:
        return ctx, parts, pins, assign(cfg, ctx.body, pins, 1, link)
    words = tuple(p.tiles.words for p in pins)
    fewest = fewest_devices(words, cfg.mem_words)
    least = max(2, math.ceil(sum(words) / cfg.mem_words))  # no row split on fewer
    # Device counts to try, fewest first: a row split's slices take a little more than
    # their share (padding to whole words and passes), so a few past the bound.
    counts = [devices] if devices else sorted({least, least + 1, least + 2} | ({fewest} if fewest else set()))
    for k in counts:
        options = []
        if fewest is not None and fewest <= k and form != "rows":
            options.append((ctx, parts, pins, assign(cfg, ctx.body, pins, k, link)))
        if k > 1 and form != "whole":
            rows = variant(k)
            try:
                options.append((*rows, assign_rows(cfg, rows[0], rows[2], k, link)))
            except ModelLoadFailed:
                pass
        if options:
            def cycles(option) -> tuple[int, int]:
                body, a = option[0].body, option[3]
                return program_cost(cfg, body, a.placement, k, link).cycles, len(set(a.homes))
            return min(options, key=cycles)
    raise ModelLoadFailed(_refusal(cfg, pins, devices, counts[-1]))


def assign_rows(cfg: MvuConfig, ctx, pins: list[isa.PinWeights], devices: int,
                link: LinkConfig = DEVICE_LINK) -> Assignment:
    """The row split of ``ctx`` (lowered with ``devices`` slices) on ``devices`` MVUs:
    slice j on device j, every other matrix whole on the device then holding the fewest
    words; or ``ModelLoadFailed`` when a device's memory overflows."""
    del link  # one placement: nothing to choose between
    held = [0] * devices
    homes = {}
    for p in sorted(pins, key=lambda p: p.slot not in ctx.slot_slice):
        d = ctx.slot_slice.get(p.slot, min(range(devices), key=held.__getitem__))
        homes[p.slot] = d
        held[d] += p.tiles.words
    if max(held) > cfg.mem_words:
        raise ModelLoadFailed(f"a row split over {devices} devices needs {max(held)} words of a tile engine's "
                              f"{cfg.mem_words}")
    slots = tuple(p.slot for p in pins)
    return Assignment(devices, slots, tuple(homes[s] for s in slots), place(ctx.body, homes, ctx.on_slice),
                      tuple(held), tuple(s for s in slots if s in ctx.slot_slice))


def _refusal(cfg: MvuConfig, pins: list[isa.PinWeights], devices: int | None, most: int = 1) -> str:
    """Why the weights do not fit: what they need against what the devices have
    (``most``: the most devices ``devices=auto`` tried)."""
    word_bits = cfg.dpes * cfg.lanes * cfg.weight_bits
    nbytes = lambda words: -(-int(words * cfg.tiles * word_bits) // 8)  # noqa: E731
    words = sum(p.tiles.words for p in pins)
    need = (f"the model's weights need {nbytes(words)} bytes of on-chip weight memory ({words} words of "
            f"{cfg.dpes}x{cfg.lanes} weights in each of {cfg.tiles} tile engines at {cfg.weight_bits:g} bits "
            f"per weight)")
    if devices == 1:
        return (f"{need}, but the matrix-vector unit has {cfg.weight_mem_bytes} bytes ({cfg.mem_words} words "
                f"per tile engine; fpga option weight_mem, or devices=auto to pin it over the fewest devices "
                f"that hold it)")
    if devices is None:
        return (f"{need}, and up to {most} devices of {cfg.weight_mem_bytes} bytes do not hold it, neither with "
                f"its matrices whole nor with its large products' rows split over them (fpga option weight_mem)")
    return (f"{need}, but {devices} devices of {cfg.weight_mem_bytes} bytes ({devices * cfg.weight_mem_bytes} in "
            f"all) hold it neither with its matrices whole in program order nor with its large products' rows "
            f"split over them; fpga option devices=auto pins it over the fewest that do")
