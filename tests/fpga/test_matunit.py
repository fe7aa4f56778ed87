"""The vectorised golden matrix unit against hw.golden.tile_matmul, tile by tile.

The serving engine re-implements the batching of hw.golden (not its arithmetic, whose
``align``/``sat_add`` it calls); these tests are what makes that safe: every tile kind
hw.random_tiles makes (extreme exponents force saturation and clipped accumulator
exponents) must give identical bits.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from backends.fpga import matunit, operands
from backends.fpga.isa import WeightTiles
from hw.config import DEFAULT, preset
from hw.random_tiles import random_tile
from models.quantize.formats import Format, quantize_blocks

CONFIGS = [preset("ref16"), DEFAULT, preset("small"), replace(DEFAULT, rows=32, cols=8, acc_bits=24)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name())
@pytest.mark.parametrize("kind", ["typical", "extreme", "zeros"])
def test_golden_engine_equals_tile_matmul(cfg, kind, rng):
    g, nk, nn, t = 2, 3, 2, 5
    tiles = [[[random_tile(cfg, rng, t, kind) for _ in range(nn)] for _ in range(nk)] for _ in range(g)]
    wm = np.array([[[x.w_mant for x in row] for row in grp] for grp in tiles])
    we = np.array([[[x.w_exp for x in row] for row in grp] for grp in tiles])
    # One input per (group, K-tile), shared by the N-tiles as on the device.
    xm = np.array([[row[0].x_mant for row in grp] for grp in tiles])
    xe = np.array([[row[0].x_exp for row in grp] for grp in tiles])
    w = WeightTiles(wm, we, nk * cfg.rows, nn * cfg.cols)
    fast, ref = matunit.golden_tiles(cfg, w, xm, xe), matunit.tile_by_tile(cfg, w, xm, xe)
    assert np.array_equal(fast, ref)


def test_golden_engine_chunks_big_products(rng, monkeypatch):
    cfg = preset("ref16")
    x, w = rng.standard_normal((1, 3, 100)), rng.standard_normal((1, 100, 40))
    wt, (xm, xe) = operands.encode_weights(cfg, None, w), operands.encode_vectors(cfg, None, x)
    whole = matunit.golden_tiles(cfg, wt, xm, xe)
    monkeypatch.setattr(matunit, "_CHUNK", 1)  # one K-tile at a time
    assert np.array_equal(matunit.golden_tiles(cfg, wt, xm, xe), whole)


@pytest.mark.parametrize("fmt", [Format.MSFP16, Format.MXINT8, Format.MSFP12, Format.MSFP8])
@pytest.mark.parametrize("rows,block", [(16, 16), (8, 8), (32, 16)])
def test_block_format_operands_are_the_quantisers_values(fmt, rows, block, rng):
    """A block-format layer computes with exactly models.quantize's values."""
    from backends.fpga.options import element_bits

    cfg = replace(DEFAULT, rows=rows, cols=rows, block=block, mant_bits=element_bits(fmt))
    x = rng.standard_normal((3, 70)) * np.exp2(rng.integers(-20, 20, (3, 1)))
    x[0, :40] = 0  # all-zero blocks
    mant, exp = operands.encode_rows(cfg, fmt, x)
    decoded = np.ldexp(mant.reshape(3, -1, cfg.block).astype(np.float64), exp[..., None]).reshape(3, -1)
    assert mant.shape[-1] % cfg.rows == 0 and np.all(decoded[:, 70:] == 0)
    assert np.array_equal(decoded[:, :70], quantize_blocks(x, fmt, axis=-1).dequantize().astype(np.float64))
    assert mant.min() >= cfg.mant_min and mant.max() <= cfg.mant_max


def test_product_is_within_the_bfp_bound(rng):
    from tests.fpga.conftest import bfp_bound

    cfg = preset("ref16")
    x, w = rng.standard_normal((4, 300)), rng.standard_normal((300, 20))
    wt, (xm, xe) = operands.encode_weights(cfg, None, w[None]), operands.encode_vectors(cfg, None, x[None])
    y = matunit.reduce_tiles(matunit.golden_tiles(cfg, wt, xm, xe), 20)[0]
    err = np.abs(y - x @ w)
    assert np.all(err <= bfp_bound(x, w)) and err.max() > 0
