"""What ``serve deploy`` checks before any conversion work.

Converting and quantising a model can take minutes; a name the repository refuses, an
unknown backend or a bad option must not be found only afterwards. ``check_deploy``
checks every argument first and returns the version's config as far as it is known
before conversion (the signature and layer formats come later). With ``trial_load``
it also loads a one-layer model on each backend, with the deploy's options: a backend
this machine lacks, or an option its backend refuses, fails here in about a second.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Sequence

from backends import BACKENDS, BackendUnavailable, get_backend
from serve.config import MODEL_FILE, ModelConfig
from serve.errors import InvalidModel
from serve.repository import check_name


def default_name(sources: Sequence[Path] | None) -> str:
    """The model's name when --name is not given: the built-in model's, else from the first file
    (its folder's name when the file is the generic ``model.*``)."""
    if not sources:
        from models.examples import digits

        return digits.NAME
    first = Path(sources[0])
    return first.stem if first.stem != "model" else first.resolve().parent.name


def parse_devices(backend: str) -> tuple[str, ...]:
    """``cpu`` or ``cpu,fpga`` -> the device names, each a registered backend."""
    devices = tuple(d.strip() for d in backend.split(",") if d.strip())
    known = ", ".join(sorted(BACKENDS))
    if not devices:
        raise BackendUnavailable(f"--backend {backend!r} names no backend; expected one of {known}")
    for device in devices:
        if device not in BACKENDS:
            raise BackendUnavailable(f"unknown backend {device!r}; expected one of {known}")
    return devices


def _check_precision(precision: str, calibration: str | None, budget: float | None) -> None:
    from models.quantize import AUTO, BUILTIN, parse_format

    if precision != AUTO:
        parse_format(precision)  # ValueError naming every format
    elif calibration is None:
        raise InvalidModel("--precision auto chooses per-layer formats on calibration data: "
                           "give --calibration (mnist, digits or an .npz file)")
    if calibration is not None and calibration not in BUILTIN and not Path(calibration).is_file():
        raise InvalidModel(f"--calibration {calibration!r} is neither a built-in set ({', '.join(BUILTIN)}) "
                           "nor an .npz file")
    if budget is not None and budget < 0:
        raise InvalidModel(f"--budget {budget:g}: an accuracy budget cannot be negative")


def check_deploy(sources: Sequence[Path] | None, *, name: str | None, backend: str, precision: str,
                 instances: int, threads: int, slo_ms: float | None, backend_options: dict[str, str],
                 calibration: str | None, budget: float | None, trial_load: bool) -> ModelConfig:
    """Every argument of a deploy, checked; raises InvalidModel, BackendUnavailable, ModelLoadFailed
    or ValueError, each with one sentence, before anything is converted or written."""
    devices = parse_devices(backend)
    model_name = check_name(name or default_name(sources))
    for source in sources or ():
        if not Path(source).exists():
            raise InvalidModel(f"{source}: no such file or directory")
    if precision != "fp32":
        _check_precision(precision, calibration, budget)
    if threads < 0:
        raise InvalidModel(f"--threads {threads}: expected 0 (the backend chooses) or more")
    try:
        config = ModelConfig(name=model_name, backend=devices[0], devices=devices if len(devices) > 1 else (),
                             instances=instances, precision=precision, slo_ms=slo_ms, threads=threads,
                             backend_options=dict(backend_options))
    except ValueError as exc:
        raise InvalidModel(str(exc)) from None
    if trial_load:
        probe = config.replace(precision="fp32")
        check_loads(probe, _one_layer_model())
    return config


def check_loads(config: ModelConfig, model_bytes: bytes) -> dict[str, bytes]:
    """Load the model once with each of its backends (raises BackendUnavailable / ModelLoadFailed);
    return what they compiled ({path in the version folder: bytes}, ``Backend.compiled_files``).

    Here rather than in serve/deploy.py, which calls it after conversion: the trial load
    above needs it too, and deploy already imports this module."""
    compiled: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / MODEL_FILE
        path.write_bytes(model_bytes)
        for device in config.backends:
            backend = get_backend(device)(config.replace(instances=1).spec(), 0)
            backend.load(path)
            compiled.update(backend.compiled_files())
            backend.close()
    return compiled


def _one_layer_model() -> bytes:
    """y = x @ w on a 1x16 input: what every backend loads (the fpga's matrix unit included)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from models.convert import TARGET_OPSET
    from models.convert.onnx_io import finalize

    weight = numpy_helper.from_array(np.eye(16, dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "preflight",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", TARGET_OPSET)])
    onnx.checker.check_model(model)
    return finalize(model).SerializeToString()
