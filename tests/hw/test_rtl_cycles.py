"""Cycle-level RTL tests with pyverilator: handshakes with random stalls, reset in
the middle of a tile, back-to-back tiles. Set BWSERVE_HW_VCD=<dir> for VCD traces."""
import numpy as np
import pytest

from hw import cycles
from hw.config import HwConfig
from hw.random_tiles import random_tile, random_tiles

CFG = HwConfig(rows=4, cols=4, block=2, mant_bits=8, exp_bits=8, acc_bits=25)  # also in the C-ABI sweep


@pytest.fixture(scope="module")
def pysim_factory(pyverilator_ready):
    from hw.pysim import PyTile

    return PyTile


@pytest.fixture
def tile(pysim_factory, vcd_path):
    t = pysim_factory(CFG, vcd=vcd_path)
    yield t
    t.close()


def test_random_stalls_bit_exact(tile):
    rng = np.random.default_rng(11)
    for i, t in enumerate(random_tiles(CFG, rng, 40, max_vectors=5)):
        tile.load_weights(t.w_mant, t.w_exp)
        p = (0.0, 0.3, 0.6)[i % 3]
        got, n = tile.run_tile(t.x_mant, t.x_exp, t.acc_exp, rng, p)
        assert np.array_equal(got, t.golden(CFG).acc), f"tile {i} ({t.kind}, p_stall {p})"
        assert n == cycles.tile_cycles(CFG, len(t.x_mant)) if p == 0 else n >= cycles.tile_cycles(CFG, len(t.x_mant))


def test_ready_signals_follow_the_protocol(tile):
    t = random_tile(CFG, np.random.default_rng(2), 2)
    tile.load_weights(t.w_mant, t.w_exp)
    assert tile.peek("w_ready") and tile.peek("x_ready") == 0  # idle: weights yes, vectors no
    tile.start(t.acc_exp)
    assert tile.peek("busy") and tile.peek("w_ready") == 0 and tile.peek("x_ready")
    tile.stream(t.x_mant, t.x_exp, max_cycles=2)  # both vectors in, x_last sent
    assert tile.peek("x_ready") == 0  # nothing more until the next start
    tile.poke("y_ready", 0)  # output stall: the result waits
    tile.tick(cycles.pipeline_latency(CFG) + 5)
    assert tile.peek("y_valid") and not tile.peek("done")
    got, done = tile.stream(t.x_mant[:0], t.x_exp[:0], n_results=2)
    assert done and np.array_equal(got, t.golden(CFG).acc)


def test_reset_in_the_middle_of_a_tile(tile):
    rng = np.random.default_rng(3)
    t = random_tile(CFG, rng, 5)
    tile.load_weights(t.w_mant, t.w_exp)
    tile.start(t.acc_exp)
    got, done = tile.stream(t.x_mant, t.x_exp, max_cycles=cycles.pipeline_latency(CFG) + 2)
    assert not done and len(got) >= 1  # some results out, the rest in flight
    tile.reset()
    assert (tile.peek("busy"), tile.peek("y_valid"), tile.peek("done"), tile.peek("w_ready")) == (0, 0, 0, 1)
    tile.poke("y_ready", 1)
    tile.tick(cycles.pipeline_latency(CFG) + 2)
    assert tile.peek("y_valid") == 0  # nothing in flight survived
    # weights survive reset; a new tile runs clean and on time
    t2 = random_tile(CFG, rng, 3)
    got, n = tile.run_tile(t2.x_mant, t2.x_exp, t2.acc_exp)
    want = type(t2)(t.w_mant, t.w_exp, t2.x_mant, t2.x_exp, t2.acc_exp, t2.kind).golden(CFG).acc
    assert np.array_equal(got, want) and n == cycles.tile_cycles(CFG, 3)


def test_back_to_back_tiles(tile):
    """The next start is taken in the very cycle done is high."""
    rng = np.random.default_rng(4)
    t = random_tile(CFG, rng, 3)
    tile.load_weights(t.w_mant, t.w_exp)
    c0, lengths = tile.cycles, (3, 1, 2)
    for n in lengths:
        x = random_tile(CFG, rng, n)
        assert tile.peek("busy") == 0
        got, _ = tile.run_tile(x.x_mant, x.x_exp, x.acc_exp)
        assert tile.peek("done") == 1 and tile.peek("busy") == 0
        want = type(x)(t.w_mant, t.w_exp, x.x_mant, x.x_exp, x.acc_exp, x.kind).golden(CFG).acc
        assert np.array_equal(got, want)
    assert tile.cycles - c0 == sum(cycles.tile_cycles(CFG, n) for n in lengths)


def test_vcd_trace(pysim_factory, tmp_path):
    path = tmp_path / "tile.vcd"
    t = random_tile(CFG, np.random.default_rng(5), 2)
    sim = pysim_factory(CFG, vcd=path)
    sim.load_weights(t.w_mant, t.w_exp)
    sim.run_tile(t.x_mant, t.x_exp, t.acc_exp)
    sim.close()
    text = path.read_text()
    assert "$var" in text and "y_valid" in text and "acc_exp" in text


def test_pyverilator_and_c_abi_agree(tile, tile_sims):
    sim = tile_sims(CFG)
    rng = np.random.default_rng(6)
    for t in random_tiles(CFG, rng, 10, max_vectors=4):
        tile.load_weights(t.w_mant, t.w_exp)
        sim.load_weights(t.w_mant, t.w_exp)
        a, na = tile.run_tile(t.x_mant, t.x_exp, t.acc_exp)
        b, nb = sim.run_tile(t.x_mant, t.x_exp, t.acc_exp)
        assert np.array_equal(a, b) and na == nb
