"""The MVU's RTL through its C ABI against the golden model (hw.mvu.golden.mvm): bit-exact
on thousands of random products over several small configs, every split of the tile
engines, with random stalls; its cycle counters equal to hw.mvu.cycles."""
from dataclasses import replace

import numpy as np
import pytest

from hw import build
from hw import golden as hw_golden
from hw.config import DEFAULT, MVU_PRESETS, MvuConfig
from hw.mvu import cycles, golden, layout
from hw.mvu.random_products import KINDS, random_matrix, random_vectors

TINY = MVU_PRESETS["tiny"]  # 2 x 2 x 4, blocks of 4, 8-bit mantissas
CONFIGS = [
    TINY,
    # two blocks a word, 4-bit mantissas, an accumulator small enough to saturate often
    MvuConfig(tiles=4, dpes=2, lanes=8, block=4, mant_bits=4, exp_bits=5, acc_bits=14, tile_mem_bytes=1024,
              max_k=64, max_m=48),
    # 16-bit mantissas, blocks of 8, three tile engines (splits 1 and 3)
    MvuConfig(tiles=3, dpes=3, lanes=8, block=8, mant_bits=16, exp_bits=6, acc_bits=40, tile_mem_bytes=4096,
              max_k=48, max_m=40),
    # the narrowest: 3-bit mantissas, blocks of 2, one DPE a tile engine, 9-bit accumulators
    # (x_words = 9: split 2 pads a long K to 10 words, one past the input buffer)
    MvuConfig(tiles=2, dpes=1, lanes=4, block=2, mant_bits=3, exp_bits=4, acc_bits=9, tile_mem_bytes=256,
              max_k=36, max_m=16),
]
RUNS = 400  # runs of 1..8 products per config: about 7,000 products in all
STALLS = (0, 10, 30, 60)


def mismatch(cfg, got, want, what: str, acc_exp) -> str:
    t, m = np.argwhere(got != want)[0]
    return (f"{cfg.name()} {what}: first mismatch at (t={t}, m={m}): rtl {got[t, m]} golden {want[t, m]} "
            f"(acc_exp {acc_exp[t]})")


def place_matrices(cfg, rng, split, base, end, count=3):
    """Up to ``count`` random matrices laid out one after another (with gaps) in weight
    words base..end-1 (at least one): [(base, shape, w_mant, w_exp)]."""
    placed = []
    for i in range(count):
        m = int(rng.integers(1, min(cfg.max_m, 3 * cfg.tiles * cfg.dpes + 3) + 1))
        k = int(rng.integers(1, min(cfg.max_k, 5 * cfg.lanes) + 1))
        s = layout.shape(cfg, m, k, split)
        if base + s.words > end:
            if placed:
                break
            m, k, s = 1, 1, layout.shape(cfg, 1, 1, split)
        w_mant, w_exp = random_matrix(cfg, rng, m, k, extreme=i == 2)
        placed.append((base, s, w_mant, w_exp))
        base += s.words + int(rng.integers(0, 3))
    return placed


@pytest.mark.parametrize("cfg", CONFIGS, ids=MvuConfig.name)
def test_rtl_matches_golden(cfg, mvu_sims):
    """Each split's matrices written once, in its own share of the weight memories, then
    runs of products on them in random order, of every kind and stall rate."""
    sim = mvu_sims(cfg)
    rng = np.random.default_rng(cfg.tiles * 1000 + cfg.lanes * 10 + cfg.mant_bits)
    splits = cfg.splits()
    share = cfg.mem_words // len(splits)
    placed = {split: place_matrices(cfg, rng, split, i * share, (i + 1) * share) for i, split in enumerate(splits)}
    for matrices in placed.values():
        for base, s, w_mant, w_exp in matrices:
            assert sim.write_weights(base, *layout.pack(cfg, w_mant, w_exp, s)) == cycles.write_cycles(s)
    products = 0
    for r in range(RUNS):
        split = splits[r % len(splits)]
        base, s, w_mant, w_exp = placed[split][int(rng.integers(len(placed[split])))]
        kind, stall = KINDS[r % len(KINDS)], STALLS[(r // len(KINDS)) % len(STALLS)]
        x_mant, x_exp, acc_exp = random_vectors(cfg, rng, w_mant, w_exp, int(rng.integers(1, 9)), kind)
        got = sim.run(x_mant, x_exp, acc_exp, base, s, stall_pct=stall, seed=r + 1)
        want = golden.mvm(cfg, w_mant, w_exp, x_mant, x_exp, acc_exp, split)
        what = f"run {r} ({kind}, stall {stall}%, {s}, base {base})"
        assert np.array_equal(got.acc, want.acc), mismatch(cfg, got.acc, want.acc, what, acc_exp)
        assert (got.cycles - got.stalls == cycles.product_cycles(s)).all(), (what, got.cycles, got.stalls)
        assert stall or not got.stalls.any()
        products += len(x_mant)
    assert products > 1500, products


def test_saturation_and_rounding_are_exercised():
    """The random kinds reach the saturating adds and the rounded blocks."""
    cfg = CONFIGS[1]
    rng = np.random.default_rng(3)
    w_mant, w_exp = random_matrix(cfg, rng, 10, 30)
    x_mant, x_exp, acc_exp = random_vectors(cfg, rng, w_mant, w_exp, 50, "saturating")
    assert golden.mvm(cfg, w_mant, w_exp, x_mant, x_exp, acc_exp).saturated.sum() > 50
    x_mant, x_exp, acc_exp = random_vectors(cfg, rng, w_mant, w_exp, 50, "rounding")
    shift = w_exp.T[None] + x_exp[:, :, None] - acc_exp[:, None, None]
    sums = golden.block_sums(cfg, golden.weight_operand(cfg, w_mant), x_mant)
    _, _, inexact = hw_golden.align(cfg, sums, shift)
    assert inexact.sum() > 50


@pytest.mark.parametrize("split", TINY.splits())
def test_cycle_counters_equal_the_cycle_model(split, mvu_sims):
    sim = mvu_sims(TINY)
    rng = np.random.default_rng(split)
    for m, k in [(1, 1), (4, 4), (5, 4), (3, 17), (24, 64), (64, 8), (9, 33)]:
        s = layout.shape(TINY, m, k, split)
        w_mant, w_exp = random_matrix(TINY, rng, m, k)
        sim.write_weights(0, *layout.pack(TINY, w_mant, w_exp, s))
        x_mant, x_exp, acc_exp = random_vectors(TINY, rng, w_mant, w_exp, 3, "typical")
        got = sim.run(x_mant, x_exp, acc_exp, 0, s)
        assert (got.cycles == cycles.product_cycles(s)).all() and not got.stalls.any(), (s, got.cycles)
        assert np.array_equal(got.acc, golden.mvm(TINY, w_mant, w_exp, x_mant, x_exp, acc_exp, split).acc)


@pytest.mark.parametrize("cfg", [TINY, CONFIGS[3]], ids=MvuConfig.name)
def test_full_input_and_output_buffers(cfg, mvu_sims):
    """K = max_k and M = max_m on every split (with K padded past the input buffer where
    split does not divide its words), with stalls."""
    sim = mvu_sims(cfg)
    rng = np.random.default_rng(7)
    for split in cfg.splits():
        for m, k in [(cfg.max_m, cfg.lanes), (cfg.tiles * cfg.dpes, cfg.max_k), (cfg.max_m, cfg.max_k)]:
            s = layout.shape(cfg, m, k, split)
            if s.words > cfg.mem_words:
                continue
            w_mant, w_exp = random_matrix(cfg, rng, m, k)
            sim.write_weights(cfg.mem_words - s.words, *layout.pack(cfg, w_mant, w_exp, s))
            for kind in KINDS:
                x_mant, x_exp, acc_exp = random_vectors(cfg, rng, w_mant, w_exp, 3, kind)
                got = sim.run(x_mant, x_exp, acc_exp, cfg.mem_words - s.words, s, stall_pct=20, seed=split)
                want = golden.mvm(cfg, w_mant, w_exp, x_mant, x_exp, acc_exp, split)
                assert np.array_equal(got.acc, want.acc), mismatch(cfg, got.acc, want.acc, f"{kind} {s}", acc_exp)
                assert (got.cycles - got.stalls == cycles.product_cycles(s)).all()


def test_extreme_operands_saturate_and_round_like_golden(mvu_sims):
    cfg = CONFIGS[2]  # 16-bit mantissas
    sim = mvu_sims(cfg)
    m, k = 7, 40
    for sign in (1, -1):
        w_mant = np.full((m, k), cfg.mant_min)
        x_mant = np.full((2, k), cfg.mant_min if sign > 0 else cfg.mant_max)
        w_exp = np.full((m, k // cfg.block), cfg.exp_max)
        x_exp = np.full((2, k // cfg.block), cfg.exp_max)
        for split in cfg.splits():
            s = layout.shape(cfg, m, k, split)
            sim.write_weights(5, *layout.pack(cfg, w_mant, w_exp, s))
            acc_exp = np.array([cfg.acc_exp_min, cfg.acc_exp_max])
            got = sim.run(x_mant, x_exp, acc_exp, 5, s, stall_pct=25)
            want = golden.mvm(cfg, w_mant, w_exp, x_mant, x_exp, acc_exp, split)
            assert np.array_equal(got.acc, want.acc), mismatch(cfg, got.acc, want.acc, f"sign {sign} {s}", acc_exp)
            assert (got.acc[0] == (cfg.acc_max if sign > 0 else cfg.acc_min)).all()


def test_weights_stay_written(mvu_sims):
    """Two matrices written once at different bases; products on each, in any order and
    after a reset, see their own weights."""
    sim = mvu_sims(TINY)
    rng = np.random.default_rng(11)
    a, b = layout.shape(TINY, 6, 12, 1), layout.shape(TINY, 3, 8, 2)
    wa, wb = random_matrix(TINY, rng, 6, 12), random_matrix(TINY, rng, 3, 8)
    sim.write_weights(0, *layout.pack(TINY, *wa, a))
    sim.write_weights(a.words, *layout.pack(TINY, *wb, b))
    for i, (base, s, w) in enumerate([(0, a, wa), (a.words, b, wb), (0, a, wa)]):
        if i == 2:
            sim.reset()
        x_mant, x_exp, acc_exp = random_vectors(TINY, rng, *w, 4, "typical")
        got = sim.run(x_mant, x_exp, acc_exp, base, s)
        assert np.array_equal(got.acc, golden.mvm(TINY, *w, x_mant, x_exp, acc_exp, s.split).acc)


def test_wrong_operands_are_refused_with_what_was_expected(mvu_sims):
    sim = mvu_sims(TINY)
    s = layout.shape(TINY, 5, 8, 1)
    mm, me = layout.pack(TINY, np.zeros((5, 8), int), np.zeros((5, 2), int), s)
    xm, xe = np.zeros((2, 8), int), np.zeros((2, 2), int)
    bad = [
        (lambda: sim.write_weights(0, mm[:1], me), "mem_mant has shape"),
        (lambda: sim.write_weights(0, mm, me[:, :, :1]), "mem_exp has shape"),
        (lambda: sim.write_weights(TINY.mem_words - 1, mm, me), "past the weight memory"),
        (lambda: sim.write_weights(0, mm + 200, me), "mem_mant value"),
        (lambda: sim.run(xm[:, :4], xe, 0, 0, s), r"x_mant has shape \(2, 4\).*\(T, Kp=8\)"),
        (lambda: sim.run(xm, xe[:, :1], 0, 0, s), "x_exp has shape"),
        (lambda: sim.run(xm, xe, [0, 0, 0], 0, s), "acc_exp has shape"),
        (lambda: sim.run(xm, xe, 10**4, 0, s), "acc_exp value"),
        (lambda: sim.run(xm, xe, 0, TINY.mem_words - 1, s), "past the weight memory"),
        (lambda: sim.run(xm, xe, 0, 0, s, stall_pct=100), "stall_pct"),
        (lambda: sim.run(xm, xe, 0, 0, s._replace(c=3)), "is not layout.shape"),
        (lambda: sim.run(xm, xe, 0, 0, layout.shape(TINY, TINY.max_m + 1, 8, 1)), "max_m"),
        (lambda: sim.run(np.zeros((1, 68), int), np.zeros((1, 17), int), 0, 0, layout.shape(TINY, 1, 68, 1)),
         "x_words"),
    ]
    for call, message in bad:
        with pytest.raises(ValueError, match=message):
            call()


@pytest.mark.parametrize("cfg", [
    MVU_PRESETS["small"],
    MvuConfig(tiles=4, dpes=32, lanes=8, block=8),  # more than 64 outputs a pass: loops Verilator keeps
    MvuConfig(tiles=1, dpes=3, lanes=96, block=4, max_k=96),  # 24 blocks a word, one tile engine
    MvuConfig(tiles=6, dpes=1, lanes=2, block=1, mant_bits=2, exp_bits=2, acc_bits=8, max_m=1),
], ids=MvuConfig.name)
def test_rtl_is_lint_clean_beyond_the_simulated_configs(cfg, verilator):
    build.lint(cfg)  # -Wall, every warning fatal


def test_build_key_follows_the_mvu_config_alone(verilator):
    keys = {build.model_key(TINY)}
    for change in ({"tiles": 4}, {"dpes": 3}, {"lanes": 8}, {"mant_bits": 4}, {"block": 2}, {"acc_bits": 30},
                   {"tile_mem_bytes": 2048}, {"max_k": 32}, {"max_m": 32}):
        keys.add(build.model_key(replace(TINY, **change)))
    assert len(keys) == 10
    # what the RTL does not see shares a build; the systolic array's key is its own
    assert build.model_key(replace(TINY, clock_hz=1e9, vector_latency=9)) == build.model_key(TINY)
    assert build.model_key(DEFAULT) not in keys
    with pytest.raises(TypeError, match="no RTL"):
        build.top_for(object())
