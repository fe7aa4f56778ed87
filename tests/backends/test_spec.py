"""``ModelConfig.spec``: what a backend is told, in numpy terms, and that it cannot change it."""
from __future__ import annotations

import numpy as np
import pytest
from tritonclient.utils import triton_to_np_dtype

from backends.null import NullBackend
from serve.config import ModelConfig, TensorSpec
from serve.datatypes import NUMPY


def test_every_v2_datatype_reaches_the_backend_as_tritonclients_numpy_dtype() -> None:
    names = sorted(NUMPY)
    config = ModelConfig(name="m", inputs=tuple(TensorSpec(f"in_{n}", n, (1, -1)) for n in names),
                         outputs=(TensorSpec("y", "INT64", (2,)),), precision="msfp16", threads=3, instances=2,
                         layer_formats={"w": "msfp16"}, backend_options={"sleep_ms": "0"})
    spec = config.spec()
    assert [(t.name, t.dtype, t.shape) for t in spec.inputs] == [
        (f"in_{n}", np.dtype(triton_to_np_dtype(n)), (1, -1)) for n in names]
    assert (spec.name, spec.precision, spec.threads, spec.instances) == ("m", "msfp16", 3, 2)
    assert dict(spec.layer_formats) == {"w": "msfp16"} and dict(spec.options) == {"sleep_ms": "0"}


def test_the_spec_is_read_only_and_a_copy_of_the_config() -> None:
    options = {"sleep_ms": "1"}
    spec = ModelConfig(name="m", backend_options=options).spec()
    options["sleep_ms"] = "1000"  # a later change to the config's dict does not reach a loaded backend
    assert spec.options["sleep_ms"] == "1"
    with pytest.raises(TypeError):
        spec.options["sleep_ms"] = "2"  # type: ignore[index]
    with pytest.raises(AttributeError):
        spec.threads = 4  # type: ignore[misc]


def test_a_backend_built_from_the_spec_answers_in_its_output_dtypes(tmp_path) -> None:
    config = ModelConfig(name="m", backend="null", outputs=(TensorSpec("ids", "INT64", (1, -1)),
                                                            TensorSpec("half", "FP16", (3,))))
    backend = NullBackend(config.spec())
    backend.load(tmp_path / "unused.onnx")
    outputs = backend.run({})
    assert outputs["ids"].dtype == np.int64 and outputs["ids"].shape == (1, 1)
    assert outputs["half"].dtype == np.float16 and outputs["half"].shape == (3,)
