"""One model pinned over several devices (issue 18, first form: whole matrices).

Brainwave served models too large for one FPGA by pinning them over several that talk
over the datacenter network (its "hardware microservices"). Here, for the
matrix-vector unit:

* each pinned matrix (a ``PinWeights`` slot: a GRU's W or R, an MLP's layer) goes whole
  to one device; the devices hold consecutive runs of the matrices in program order,
  each within its tile engines' ``MvuConfig.mem_words``;
* a product runs on the device holding its weights; every other instruction (a
  run-time-weight product included) where its first operand that is not a constant
  was produced; a request input lands on the device of its first reader;
* of the assignments that fit, the one with the fewest modeled cycles
  (``cycles.program_cost``, transfers between devices included) is chosen; on a tie,
  the one on fewer devices.

The arithmetic is one device's, so the outputs are bit for bit those of one device
large enough for every matrix. Not yet: one matrix's rows split over devices, so a
device count beyond the number of matrices adds nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Iterator

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

    def describe(self) -> str:
        """Which matrices each device holds, e.g. ``device 0: W:W#1 (3 words); device 1: ...; 2 idle``."""
        used = sorted(set(self.homes))
        held = lambda d: ", ".join(s for s, h in zip(self.slots, self.homes) if h == d)  # noqa: E731
        idle = self.devices - len(used)
        return "; ".join([f"device {d}: {held(d)} ({self.words[d]} words)" for d in used]
                         + ([f"{idle} idle"] if idle else []))


def place(body: list, homes: dict[str, int]) -> tuple[int, ...]:
    """The device each instruction of ``body`` runs on (module doc), ``homes`` the
    device of each pinned matrix."""
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


def _refusal(cfg: MvuConfig, pins: list[isa.PinWeights], devices: int | None) -> str:
    """Why the weights do not fit: what they need against what the devices have."""
    word_bits = cfg.dpes * cfg.lanes * cfg.weight_bits
    nbytes = lambda words: -(-int(words * cfg.tiles * word_bits) // 8)  # noqa: E731
    words = sum(p.tiles.words for p in pins)
    need = (f"the model's weights need {nbytes(words)} bytes of on-chip weight memory ({words} words of "
            f"{cfg.dpes}x{cfg.lanes} weights in each of {cfg.tiles} tile engines at {cfg.weight_bits:g} bits "
            f"per weight)")
    big = max(pins, key=lambda p: p.tiles.words)
    if devices != 1 and big.tiles.words > cfg.mem_words:
        return (f"{need}, and one {big.tiles.k}x{big.tiles.n} matrix needs {nbytes(big.tiles.words)} bytes, more "
                f"than a device's {cfg.weight_mem_bytes} bytes: a matrix is pinned whole on one device (splitting "
                f"its rows over devices is not implemented yet; fpga option weight_mem)")
    if devices == 1:
        return (f"{need}, but the matrix-vector unit has {cfg.weight_mem_bytes} bytes ({cfg.mem_words} words "
                f"per tile engine; fpga option weight_mem, or devices=auto to pin it over the fewest devices "
                f"that hold it)")
    return (f"{need}, but {devices} devices of {cfg.weight_mem_bytes} bytes ({devices * cfg.weight_mem_bytes} in "
            f"all) do not hold its matrices whole in program order; fpga option devices=auto pins it over the "
            f"fewest that do ({fewest_devices(tuple(p.tiles.words for p in pins), cfg.mem_words)})")
