"""A compiled program in figures: what ``serve compile`` prints and the artefact records."""
from __future__ import annotations

from collections import Counter

from hw.config import MvuConfig

from backends.fpga import isa
from backends.fpga.artifact import Compiled
from backends.fpga.operands import mvu_bytes, tile_bytes


def weight_bytes(cfg, tiles: isa.WeightTiles | isa.MvuWeights) -> int:
    """On-chip bytes one pinned matrix takes (mantissas and shared exponents)."""
    return mvu_bytes(cfg, tiles.words) if isinstance(cfg, MvuConfig) else tile_bytes(cfg, tiles.tiles)


def summary(c: Compiled) -> dict:
    """Instructions (by kind), cycles, utilisation, pinned bytes (per device), as JSON data."""
    p, cfg, cost = c.program, c.cfg, c.cost
    pins = {ins.slot: weight_bytes(cfg, ins.tiles) for ins in p.prologue if isinstance(ins, isa.PinWeights)}
    a = p.assignment
    homes = dict(zip(a.slots, a.homes)) if a is not None else {}
    per_device = [0] * (a.devices if a is not None else 1)
    for slot, nbytes in pins.items():
        per_device[homes.get(slot, 0)] += nbytes
    return {
        "engine": c.engine, "config": cfg.name(),
        "instructions": len(p.body), "by_kind": dict(sorted(Counter(type(i).__name__ for i in p.body).items())),
        "cycles": cost.cycles, "seconds": cost.seconds(cfg),
        "utilisation": cost.utilisation(cfg), "end_to_end_utilisation": cost.end_to_end_utilisation(cfg),
        "pinned_matrices": len(pins), "pinned_weight_bytes": sum(pins.values()),
        "pinned_const_bytes": sum(i.value.nbytes for i in p.prologue if isinstance(i, isa.PinConst)),
        "weight_bytes_per_device": per_device, "host_partitions": len(p.host_parts),
        "alternatives": {**{e: f"{k.cycles} cycles" for e, k in c.candidates.items() if e != c.engine},
                         **c.refused},
    }


def lines(s: dict) -> list[str]:
    """``summary``'s figures as text, one fact a line."""
    kinds = ", ".join(f"{k} {n}" for k, n in s["by_kind"].items())
    out = [f"engine      {s['engine']} {s['config']}",
           f"instructions {s['instructions']} a request ({kinds})",
           f"cycles      {s['cycles']} ({s['seconds'] * 1e6:.1f} us modeled)",
           f"utilisation {s['utilisation']:.1%} of the MACs while computing, "
           f"{s['end_to_end_utilisation']:.1%} over the whole request",
           f"pinned      {s['pinned_weight_bytes']} bytes of weights in {s['pinned_matrices']} matrices, "
           f"{s['pinned_const_bytes']} bytes of constants"]
    if len(s["weight_bytes_per_device"]) > 1:
        out += [f"  device {d}  {n} bytes of weights" for d, n in enumerate(s["weight_bytes_per_device"])]
    if s["host_partitions"]:
        out.append(f"host        {s['host_partitions']} partition(s) run on the host")
    out += [f"instead     {e}: {why}" for e, why in s["alternatives"].items()]
    return out
