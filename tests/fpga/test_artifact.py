"""The compiled program as an artefact in the version folder (issue 20, item 4).

A load of a model whose artefact matches binds it without compiling (``compile_for``
is not called: a counting spy around the real function), and serves outputs bit for
bit the freshly compiled program's; another key, or a damaged artefact, compiles again.
"""
from __future__ import annotations

import json
import re
import logging

import numpy as np
import onnx
import pytest

from backends.base import ModelSpec
from backends.fpga import FpgaBackend, artifact, backend as fpga_backend, isa
from backends.fpga.summary import summary
from serve.repository import write_files
from tests.fpga.conftest import fpga
from tests.fpga.test_rnn import rnn_model
from tests.fpga.test_rtl import _verilator
from tests.fpga.test_compiler import _host_sandwich
from tests.fpga.test_devices import MODELS, _memory, _one_big, _words

MODEL_FILE = "model.onnx"
MVU = {"mvu": "tiny", "weight_mem": "1MiB"}  # a small MVU that holds the MLP


def _mlp():
    from models.examples import mlp

    return mlp.build((64, 48, 40, 32, 10))


@pytest.fixture
def compiles(monkeypatch):
    """How many times the real ``compile_for`` ran since the fixture was made."""
    calls = []
    real = fpga_backend.compile_for

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(fpga_backend, "compile_for", spy)
    return calls


def _load(folder, formats=None, **options) -> FpgaBackend:
    backend = FpgaBackend(ModelSpec(name="m", layer_formats=formats or {},
                                    options={k: str(v) for k, v in options.items()}))
    backend.load(folder / MODEL_FILE)
    return backend


def _deploy(folder, model, formats=None, **options) -> FpgaBackend:
    """What deploy does: the model in a version folder, loaded once, its artefact written."""
    (folder / MODEL_FILE).write_bytes(model.SerializeToString())
    first = _load(folder, formats, **options)
    write_files(folder, first.compiled_files())
    return first


def _same_outputs(a: FpgaBackend, b: FpgaBackend, feeds: dict) -> None:
    want, got = a.run(feeds), b.run(feeds)
    assert want.keys() == got.keys() and all(np.array_equal(want[k], got[k]) for k in want)


def _mvu_over_devices(rng):
    """A GRU over devices that each hold its largest matrix, not two (as test_devices)."""
    make, mvu, name, shape = MODELS["gru"]
    model = make(rng)
    big = _one_big(model, mvu)
    options = {"mvu": mvu, "devices": "auto", "weight_mem": _memory(big, max(_words(big)))}
    return model, options, {name: rng.standard_normal(shape).astype(np.float32)}


CASES = {
    "systolic": lambda rng: (_mlp(), {"array": "16x16"}, {"input": rng.standard_normal((1, 64)).astype(np.float32)}),
    "mvu": lambda rng: (_mlp(), MVU, {"input": rng.standard_normal((1, 64)).astype(np.float32)}),
    "auto-with-host-partition": lambda rng: (_host_sandwich(rng), {},
                                             {"x": rng.standard_normal((1, 30)).astype(np.float32)}),
    "mvu-over-devices": _mvu_over_devices,
    "mvu-row-split": lambda rng: (rnn_model("GRU", "forward", rng, linear_before_reset=1),
                                  {"devices": "2", "split": "rows", "weight_mem": "1MiB"},
                                  {"x": rng.standard_normal((25, 1, 48)).astype(np.float32)}),
}


@pytest.mark.parametrize("case", CASES)
def test_a_second_load_binds_the_artefact_without_compiling_and_agrees_bit_for_bit(case, tmp_path, rng, compiles):
    model, options, feeds = CASES[case](rng)
    compiles.clear()  # the case's own sizing compiles (mvu-over-devices) are not the loads'
    fresh = _deploy(tmp_path, model, **options)
    assert len(compiles) == 1
    loaded = _load(tmp_path, **options)
    assert len(compiles) == 1  # the second load compiled nothing
    assert (loaded.engine_name, loaded.cfg, loaded.cost) == (fresh.engine_name, fresh.cfg, fresh.cost)
    assert loaded.candidates == fresh.candidates and loaded.program.body == fresh.program.body
    assert loaded.program.assignment == fresh.program.assignment
    for _ in range(3):
        _same_outputs(fresh, loaded, feeds)
        feeds = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in feeds.items()}
    if case == "mvu-over-devices":
        assert len(set(loaded.assignment.homes)) >= 2
    if case == "mvu-row-split":  # the row split's own instructions and fields came back
        assert loaded.assignment.form == "rows" and any(isinstance(i, isa.AccStats) for i in loaded.program.body)
    if case == "auto-with-host-partition":
        assert loaded.program.host_parts and any(isinstance(i, isa.HostCall) for i in loaded.program.body)


@pytest.mark.parametrize("other", [{"array": "8x8"}, MVU, {"array": "16x16", "mant_bits": "12"}])
def test_another_key_compiles_again(other, tmp_path, rng, compiles):
    _deploy(tmp_path, _mlp(), array="16x16")
    backend = _load(tmp_path, **other)
    assert len(compiles) == 2
    assert backend.engine_name == ("mvu" if "mvu" in other else "systolic")
    _load(tmp_path, array="16x16", fpga_sim="tile")  # the simulator alone is no other program
    assert len(compiles) == 2


@pytest.mark.skipif(not _verilator(), reason="Verilator not installed")
def test_an_artefact_compiled_on_the_golden_engine_runs_on_the_mvu_rtl(tmp_path, rng, compiles):
    """fpga_sim picks what runs a program, not the program: the Verilated MVU is given the
    weights the artefact pins (test_rtl's GRU, whose RTL build is cached) and agrees."""
    formats = {"W": "msfp16", "R": "msfp16"}
    fresh = _deploy(tmp_path, rnn_model("GRU", "forward", rng, linear_before_reset=1), formats, engine="mvu")
    rtl = _load(tmp_path, formats, engine="mvu", fpga_sim="rtl")
    assert len(compiles) == 1
    try:
        _same_outputs(fresh, rtl, {"x": rng.standard_normal((25, 1, 48)).astype(np.float32)})
        assert rtl.engine.matrix_cycles == fresh.cost.matmul_cycles
    finally:
        rtl.close()


def _artefact(folder):
    (json_path,) = (folder / artifact.FOLDER).glob("fpga-*.json")
    return json_path, json_path.with_suffix(".npz")


def _truncate_npz(folder):
    npz = _artefact(folder)[1]
    npz.write_bytes(npz.read_bytes()[:100])


def _flip_a_weight_byte(folder):
    npz = _artefact(folder)[1]
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0x40  # inside the largest array, the pinned weights: zip's CRC-32 sees it
    npz.write_bytes(bytes(data))


def _foreign_class(folder):
    """A swapped JSON that names a class outside the program's modules (and fixes its hash)."""
    json_path, _ = _artefact(folder)
    doc = json.loads(json_path.read_bytes())
    doc["compiled"]["d"][0][1] = {"dc": "subprocess:Popen", "f": {"args": ["true"]}}
    json_path.write_text(json.dumps(doc))


def _not_json(folder):
    _artefact(folder)[0].write_bytes(b"\x80not json")


@pytest.mark.parametrize("damage", [_truncate_npz, _flip_a_weight_byte, _foreign_class, _not_json])
def test_a_damaged_artefact_compiles_again_with_a_log_line(damage, tmp_path, rng, compiles, caplog):
    fresh = _deploy(tmp_path, _mlp(), **MVU)
    damage(tmp_path)
    with caplog.at_level(logging.WARNING, logger="bwserve.fpga"):
        again = _load(tmp_path, **MVU)
    assert len(compiles) == 2
    assert any("unreadable" in r.getMessage() and "compiling" in r.getMessage() for r in caplog.records)
    _same_outputs(fresh, again, {"input": rng.standard_normal((1, 64)).astype(np.float32)})


def test_the_artefact_is_json_and_arrays_without_pickle(tmp_path):
    _deploy(tmp_path, _mlp(), **MVU)
    json_path, npz_path = _artefact(tmp_path)
    doc = json.loads(json_path.read_bytes())
    assert doc["summary"]["instructions"] == sum(doc["summary"]["by_kind"].values()) > 0
    with np.load(npz_path, allow_pickle=False) as z:
        assert all(z[name].dtype != object for name in z.files)


def test_a_changed_model_file_is_another_key(tmp_path, compiles):
    _deploy(tmp_path, _mlp(), **MVU)
    from models.examples import mlp

    (tmp_path / MODEL_FILE).write_bytes(mlp.build((64, 48, 40, 32, 10), seed=1).SerializeToString())
    _load(tmp_path, **MVU)
    assert len(compiles) == 2


def _repository_with_a_version(tmp_path, compiles, **options):
    """What ``serve deploy --backend fpga`` does: prepare (its trial load compiles), write the version."""
    from serve.deploy import prepare
    from serve.repository import ModelRepository

    source = tmp_path / "mlp.onnx"
    source.write_bytes(_mlp().SerializeToString())
    prepared = prepare([source], name="mlp", backend="fpga", backend_options=options)
    assert compiles  # the trial loads (preflight's one-layer model, then this one) compiled
    compiles.clear()
    repo = ModelRepository(tmp_path / "repo")
    return repo, repo.add(prepared.config, prepared.model_bytes, prepared.compiled)


def test_a_deployed_fpga_version_holds_its_artefact_and_the_servers_load_compiles_nothing(tmp_path, compiles):
    from serve.config import MODEL_FILE as VERSION_MODEL

    repo, version = _repository_with_a_version(tmp_path, compiles, **MVU)
    folder = repo.version_dir("mlp", version)
    assert [p.suffix for p in sorted((folder / artifact.FOLDER).iterdir())] == [".json", ".npz"]
    backend = FpgaBackend(repo.read_config("mlp", version).spec())
    backend.load(folder / VERSION_MODEL)
    assert not compiles and backend.engine_name == "mvu"


def test_serve_compile_writes_the_artefact_and_prints_the_summary(tmp_path, compiles, capsys):
    from serve.cli import main

    repo, version = _repository_with_a_version(tmp_path, compiles, **MVU)
    assert main(["compile", "mlp", "--repo", str(repo.root), "--option", "devices=2",
                 "--option", "weight_mem=8KiB"]) == 0
    out = capsys.readouterr().out
    assert len(compiles) == 1  # other options: another program, compiled
    stored = onnx.load(str(repo.version_dir("mlp", version) / MODEL_FILE))  # as deploy converted it
    want = fpga(stored, mvu="tiny", devices="2", weight_mem="8KiB")  # the same program, compiled here
    assert f"instructions {len(want.program.body)} a request (" in out and "MatMul 4," in out  # four layers
    assert f"cycles      {want.cost.cycles} " in out and f"{want.cost.utilisation(want.cfg):.1%} of the MACs" in out
    per_device = summary(want.compiled)["weight_bytes_per_device"]
    assert len(per_device) == 2 and all(f"device {d}  {n} bytes" in out for d, n in enumerate(per_device))
    assert "note: the server loads this version on fpga with options" in out
    assert len(list((repo.version_dir("mlp", version) / artifact.FOLDER).glob("fpga-*.json"))) == 2
    compiles.clear()
    assert main(["compile", "mlp", "--repo", str(repo.root)]) == 0  # the version's own: bound, not compiled
    assert not compiles and "note" not in capsys.readouterr().out


@pytest.mark.parametrize("args, why", [
    (["nope"], "no model 'nope' in .* \\(its models: mlp\\)"),
    (["mlp", "--version", "7"], "model 'mlp' has no version 7 .* \\(versions: 1\\)"),
    (["mlp", "--option", "array=3"], "does not compile for the fpga: fpga option array='3': expected ROWSxCOLS"),
    (["mlp", "--option", "mvu=tiny", "--option", "weight_mem=1KiB"], "weights need \\d+ bytes"),
    (["../x"], "invalid model name '../x'"),
])
def test_serve_compile_refuses_bad_input_saying_what_was_expected(args, why, tmp_path, compiles, capsys):
    from serve.cli import main

    repo, version = _repository_with_a_version(tmp_path, compiles, **MVU)
    before = sorted((repo.version_dir("mlp", version) / artifact.FOLDER).iterdir())
    assert main(["compile", *args, "--repo", str(repo.root)]) == 1
    assert re.search(why, capsys.readouterr().err)
    assert sorted((repo.version_dir("mlp", version) / artifact.FOLDER).iterdir()) == before  # nothing written


def test_serve_compile_refuses_a_backend_without_a_compile_stage(capsys):
    from serve.cli import main

    with pytest.raises(SystemExit):
        main(["compile", "mlp", "--backend", "cpu"])
    assert "invalid choice: 'cpu' (choose from 'fpga')" in capsys.readouterr().err
