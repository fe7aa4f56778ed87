"""The `serve` command as a new user meets it: wrong flags, no server, what `serve list` shows."""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from models.examples import mlp
from serve.repository import ModelRepository
from tests.serve_cli import one_sentence, run


def test_a_wrong_flag_shows_the_commands_usage(tmp_path: Path) -> None:
    done = run("deploy", "--bogus", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: serve deploy ") and "--backend" in done.stderr
    assert "serve deploy: error: unrecognized arguments: --bogus" in done.stderr
    assert run("list", "--nope", cwd=tmp_path).stderr.startswith("usage: serve list ")


@pytest.mark.parametrize("command", [["infer", "digits"], ["bench", "digits", "--requests", "1"]])
def test_with_no_server_the_client_commands_say_so(tmp_path: Path, command) -> None:
    done = run(*command, "--server", "127.0.0.1:1", cwd=tmp_path)
    assert done.returncode == 1
    text = one_sentence(done.stderr)
    assert text == ("no bwserve server answers at 127.0.0.1:1: start one with `serve deploy` or `serve start`, "
                    "or name where one runs with --server"), done.stderr


def test_list_shows_every_backend_of_a_model(tmp_path: Path) -> None:
    from serve.deploy import prepare

    onnx.save(mlp.build(sizes=(16, 8, 4)), tmp_path / "mlp.onnx")
    prepared = prepare([tmp_path / "mlp.onnx"], backend="cpu,null", trial_load=False)
    ModelRepository(tmp_path / "repo").add(prepared.config, prepared.model_bytes)
    listing = run("list", "--repo", "repo", "--server", "127.0.0.1:1", cwd=tmp_path)
    assert listing.returncode == 0
    (row,) = [line for line in listing.stdout.splitlines() if "mlp" in line]
    assert "cpu,null" in row, listing.stdout
