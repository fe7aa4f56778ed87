"""The matrix unit: every (rows x cols) weight tile of a product, on one of three engines.

* ``golden`` (serving default): all tiles of a product at once, vectorised in numpy
  with ``hw.golden``'s own ``align`` and ``sat_add`` steps and its rule for choosing
  each tile's accumulator exponent. ``tests/fpga/test_matunit.py`` checks it bit for
  bit against ``hw.golden.tile_matmul`` called tile by tile (the ``tile`` engine).
* ``tile``: one ``hw.golden.tile_matmul`` call per tile (the specification itself).
* ``rtl``: one Verilated tile run per tile (``hw.sim.TileSim.run_tiles``: all tiles
  of a product in one call), fed the accumulator exponents ``hw.golden``'s rule
  picks; its cycle counts are recorded.

Each engine returns the tiles' values ``acc * 2**acc_exp`` (float64, exact); the
runtime then adds the K-tiles in one fixed order, so all three agree bit for bit.
"""
from __future__ import annotations

import numpy as np

from hw import golden
from hw.config import HwConfig

from backends.fpga.isa import WeightTiles

# Elements of the largest intermediate array (G*nk*nn*nb*T*cols) the golden engine makes
# at once; bigger products are done in slices of K-tiles (identical results).
_CHUNK = 1 << 22


def _sums(cfg: HwConfig, wm, we, xm, xe) -> tuple[np.ndarray, np.ndarray]:
    """Every tile's block sums and block product exponents. ``wm``: float64 weight
    mantissas (exact), the rest int64."""
    g, nk, nn = wm.shape[:3]
    t, nb, b, cols = xm.shape[2], cfg.n_blocks, cfg.block, cfg.cols
    xs = xm.reshape(g, nk, 1, t, nb, b).transpose(0, 1, 2, 4, 3, 5).astype(np.float64)
    ws = wm.reshape(g, nk, nn, nb, b, cols)
    sums = np.matmul(xs, ws).astype(np.int64)  # (g, nk, nn, nb, t, cols); exact, as golden.block_sums
    e = we[:, :, :, :, None, :] + xe.transpose(0, 1, 3, 2)[:, :, None, :, :, None]
    return sums, e


def _golden_chunk(cfg: HwConfig, wm, we, xm, xe) -> np.ndarray:
    sums, e = _sums(cfg, wm, we, xm, xe)
    acc_exp = golden.acc_exp_rule(cfg, sums, e)
    aligned, _, _ = golden.align(cfg, sums, e - acc_exp[..., None, None, None])
    acc = aligned[:, :, :, 0]
    for blk in range(1, cfg.n_blocks):  # in order: saturation makes the order matter
        acc, _ = golden.sat_add(cfg, acc, aligned[:, :, :, blk])
    return np.ldexp(acc.astype(np.float64), acc_exp[..., None, None])


def _acc_exp_chunk(cfg: HwConfig, wm, we, xm, xe) -> np.ndarray:
    return golden.acc_exp_rule(cfg, *_sums(cfg, wm, we, xm, xe))


def _by_k_slices(cfg: HwConfig, w: WeightTiles, xm: np.ndarray, xe: np.ndarray, chunk) -> np.ndarray:
    """``chunk(cfg, ...)`` over slices of K-tiles small enough for _CHUNK, joined on axis 1."""
    g, nk, nn = w.mant.shape[:3]
    per_k = g * nn * cfg.n_blocks * xm.shape[2] * cfg.cols
    step = max(1, _CHUNK // max(per_k, 1))
    wf = w.mant_f64
    parts = [chunk(cfg, wf[:, s:s + step], w.exp[:, s:s + step], xm[:, s:s + step], xe[:, s:s + step])
             for s in range(0, nk, step)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def golden_tiles(cfg: HwConfig, w: WeightTiles, xm: np.ndarray, xe: np.ndarray) -> np.ndarray:
    """Values of every tile: (G, nk, nn, T, cols) float64, vectorised over all tiles."""
    return _by_k_slices(cfg, w, xm, xe, _golden_chunk)


def tile_by_tile(cfg: HwConfig, w: WeightTiles, xm: np.ndarray, xe: np.ndarray) -> np.ndarray:
    """The same values through ``hw.golden.tile_matmul``, one call per tile (slow)."""
    g, nk, nn = w.mant.shape[:3]
    out = np.empty((g, nk, nn, xm.shape[2], cfg.cols))
    for i in np.ndindex(g, nk, nn):
        out[i] = golden.tile_matmul(cfg, w.mant[i], w.exp[i], xm[i[:2]], xe[i[:2]]).values()
    return out


class RtlEngine:
    """Tiles on the Verilated array; keeps the cycle counts the RTL reported."""

    def __init__(self, cfg: HwConfig):
        from hw.sim import TileSim  # builds or reuses the cached Verilator model

        self.cfg = cfg
        self.sim = TileSim(cfg)
        self.load_cycles = 0
        self.tile_cycles = 0

    def __call__(self, cfg: HwConfig, w: WeightTiles, xm: np.ndarray, xe: np.ndarray) -> np.ndarray:
        g, nk, nn = w.mant.shape[:3]
        t, rows, cols = xm.shape[2], cfg.rows, cfg.cols
        # Every tile's accumulator exponent at once (the rule choose_acc_exp applies per
        # tile), then all tiles in one call into the model: tile (g, k, n) loads its
        # weights and runs input tile (g, k).
        acc_exp = _by_k_slices(cfg, w, xm, xe, _acc_exp_chunk).reshape(-1)
        runs = self.sim.run_tiles(xm.reshape(g * nk, t, rows), xe.reshape(g * nk, t, cfg.n_blocks), acc_exp,
                                  w_mant=w.mant.reshape(-1, rows, cols), w_exp=w.exp.reshape(-1, cfg.n_blocks, cols),
                                  x_index=np.arange(g * nk * nn) // nn)
        self.load_cycles += int(runs.load_cycles.sum())
        self.tile_cycles += int(runs.tile_cycles.sum())
        return np.ldexp(runs.acc.astype(np.float64), acc_exp[:, None, None]).reshape(g, nk, nn, t, cols)

    @property
    def matrix_cycles(self) -> int:
        """Cycles the array's counters have reported: the cycle model's ``matmul_cycles``."""
        return self.load_cycles + self.tile_cycles

    def close(self) -> None:
        self.sim.close()


def reduce_tiles(values: np.ndarray, n: int) -> np.ndarray:
    """(G, nk, nn, T, cols) tile values -> (G, T, N) fp32: K-tiles added in order in
    the float64 accumulation buffer, then rounded once."""
    total = values[:, 0]
    for kt in range(1, values.shape[1]):
        total = total + values[:, kt]
    g, nn, t, cols = total.shape
    return total.transpose(0, 2, 1, 3).reshape(g, t, nn * cols)[:, :, :n].astype(np.float32)
