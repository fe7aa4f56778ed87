"""HwConfig: checked when made, sizes derived once, presets by copying."""
from dataclasses import FrozenInstanceError, replace

import pytest

from hw import cycles
from hw.config import DEFAULT, PRESETS, HwConfig, preset


@pytest.mark.parametrize(
    "change",
    [
        {"rows": 0},
        {"cols": 65},
        {"mant_bits": 1},
        {"mant_bits": 17},
        {"exp_bits": 1},
        {"block": 3},  # does not divide 16 rows
        {"acc_bits": 20},  # a block sum of m8 b16 needs 20 bits, the accumulator one more
        {"acc_bits": 64},
        {"clock_hz": 0.0},
        {"weight_mem_bytes": 0},
        {"rows": 4.0},
    ],
)
def test_invalid_configs_are_rejected(change):
    with pytest.raises((ValueError, TypeError)):
        replace(DEFAULT, **change)


def test_config_is_frozen():
    with pytest.raises(FrozenInstanceError):
        DEFAULT.rows = 8  # type: ignore[misc]


@pytest.mark.parametrize("mant,block,want", [(2, 1, 4), (8, 16, 20), (16, 32, 37), (3, 4, 8)])
def test_psum_bits_holds_the_largest_block_sum(mant, block, want):
    cfg = HwConfig(rows=32, mant_bits=mant, block=block, acc_bits=63)
    assert cfg.psum_bits == want
    biggest = block * cfg.mant_min**2  # every product (-2**(m-1))**2
    assert biggest <= (1 << (cfg.psum_bits - 1)) - 1 < 2 * biggest


def test_derived_ranges():
    cfg = HwConfig(mant_bits=4, exp_bits=3, acc_bits=24, rows=8, cols=4, block=4)
    assert (cfg.mant_min, cfg.mant_max) == (-8, 7)
    assert (cfg.exp_min, cfg.exp_max) == (-4, 3)
    assert (cfg.acc_exp_min, cfg.acc_exp_max) == (-8, 7)
    assert cfg.acc_exp_min <= 2 * cfg.exp_min and 2 * cfg.exp_max <= cfg.acc_exp_max
    assert (cfg.acc_min, cfg.acc_max) == (-(2**23), 2**23 - 1)
    assert cfg.n_blocks == 2 and cfg.macs == 32


def test_verilog_params_come_from_the_config():
    cfg = PRESETS["ref16"]
    p = cfg.verilog_params()
    assert p == {"ROWS": 16, "COLS": 16, "MANT": 16, "EXPW": 8, "BLOCK": 16, "PSUM": cfg.psum_bits, "ACC": 63}


def test_presets_are_valid_and_named():
    assert preset("default") is DEFAULT
    assert len({c.name() for c in PRESETS.values()}) == len(PRESETS)
    with pytest.raises(ValueError, match="known"):
        preset("nope")


def test_cycle_model():
    cfg = HwConfig(rows=8, cols=4, block=4)
    assert cycles.pipeline_latency(cfg) == 8 + 2 + 4 - 1
    assert cycles.tile_cycles(cfg, 1) == 1 + 13 + 1
    assert cycles.tile_cycles(cfg, 10) - cycles.tile_cycles(cfg, 9) == 1
    assert cycles.load_cycles(cfg) == 8
    assert cycles.tile_seconds(cfg, 1) == pytest.approx(15 / cfg.clock_hz)
    with pytest.raises(ValueError):
        cycles.tile_cycles(cfg, 0)


def test_weight_capacity():
    cfg = HwConfig(mant_bits=8, exp_bits=8, block=16, weight_mem_bytes=1024)
    assert cfg.weight_capacity == int(1024 * 8 // 8.5)
