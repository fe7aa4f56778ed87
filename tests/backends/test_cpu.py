"""The CPU backend's session options: what each backend option sets, and a clear refusal."""
from __future__ import annotations

import pytest

from backends.base import ModelLoadFailed
from backends.cpu import CpuBackend
from serve.config import ModelConfig


def _options(**backend_options):
    return CpuBackend(ModelConfig(name="m", backend_options=backend_options), 0).session_options()


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
