"""The CPU backend's session options: what each backend option sets, and a clear refusal."""
from __future__ import annotations

import pytest

from backends.base import ModelLoadFailed, ModelSpec
from backends.cpu import CpuBackend


def _options(**options):
    return CpuBackend(ModelSpec(name="m", options=options), 0).session_options()


@pytest.mark.parametrize("spinning, allow, stop", [("1", "1", None), ("0", "0", None), ("run", "1", "1")])
def test_spinning_option_sets_onnxruntime_config(spinning, allow, stop) -> None:
    options = _options(spinning=spinning)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == allow
    if stop is None:
        with pytest.raises(Exception):  # onnxruntime raises for a key never set
            options.get_session_config_entry("session.force_spinning_stop")
    else:
        assert options.get_session_config_entry("session.force_spinning_stop") == stop


def test_default_spins_and_unknown_spinning_is_refused() -> None:
    assert _options().get_session_config_entry("session.intra_op.allow_spinning") == "1"
    with pytest.raises(ModelLoadFailed, match="spinning='yes'.*0, 1 or run"):
        _options(spinning="yes")


def _loaded(tmp_path, threads: int, **options) -> CpuBackend:
    import onnx

    from models.examples import mlp

    path = tmp_path / "mlp.onnx"
    onnx.save(mlp.build((8, 16, 4)), path)
    backend = CpuBackend(ModelSpec(name="m", threads=threads, options=options), 0)
    backend.load(path)
    return backend


def test_a_multithreaded_session_gets_a_one_thread_twin_for_runs_under_load(tmp_path) -> None:
    import numpy as np

    backend = _loaded(tmp_path, threads=2)
    assert backend.busy_mode
    assert backend.busy_session.get_session_options().intra_op_num_threads == 1
    assert backend.session.get_session_options().intra_op_num_threads == 2
    x = {"input": np.random.default_rng(0).random((1, 8), dtype=np.float32)}
    np.testing.assert_array_equal(backend.run_busy(x)["logits"], backend.run(x)["logits"])


@pytest.mark.parametrize("threads, options", [(1, {}), (2, {"busy_threads": "0"}), (2, {"busy_threads": "2"})])
def test_no_twin_where_it_would_change_nothing_or_is_turned_off(tmp_path, threads, options) -> None:
    backend = _loaded(tmp_path, threads, **options)
    assert not backend.busy_mode and backend.busy_session is None


def test_a_bad_busy_threads_is_refused(tmp_path) -> None:
    with pytest.raises(ModelLoadFailed, match="busy_threads='one'"):
        _loaded(tmp_path, 2, busy_threads="one")
