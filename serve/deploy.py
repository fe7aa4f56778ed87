"""Turn a model source into a repository version: convert, quantise, check, describe.

Every check that can fail happens here, before anything is written: a model
that cannot be converted or that the chosen backend cannot load never reaches
the repository.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import onnx

from serve.config import ModelConfig
from serve.errors import InvalidModel
from serve.preflight import check_deploy, check_loads, default_name
from serve.signature import batch_one, read_signature


@dataclass(frozen=True)
class Prepared:
    config: ModelConfig
    model_bytes: bytes
    notes: tuple[str, ...]  # what the user should read (accuracy, conversions, formats)
    # What the trial load compiled (the fpga's program), written into the version with
    # the model so that the server's load binds it instead of compiling again.
    compiled: Mapping[str, bytes] = field(default_factory=dict)


def load_source(sources: Sequence[Path] | None, framework: str | None, progress: Callable[[str], None],
                input_shapes: dict | None = None) -> tuple[onnx.ModelProto, str, list[str]]:
    """(ONNX model, default name, notes) for model files, or the built-in digits model."""
    if not sources:
        from models.examples import digits

        progress("training the built-in digits model on scikit-learn's digits")
        trained = digits.train()
        note = (f"built-in model '{digits.NAME}': accuracy {trained.test_accuracy:.2%} on "
                f"{trained.test_count} held-back digits")
        return trained.model, digits.NAME, [note]
    from models.convert import ConversionError, convert

    try:
        result = convert(list(sources) if len(sources) > 1 else sources[0], framework=framework,
                         input_shapes=input_shapes or None, progress=progress)
    except ConversionError as exc:
        raise InvalidModel(str(exc)) from exc
    return result.model, default_name(sources), ["\n".join(result.summary.lines())]


def prepare(sources: Sequence[Path] | None, *, name: str | None = None, backend: str = "cpu",
            framework: str | None = None, input_shapes: dict | None = None, precision: str = "fp32", instances: int = 1,
            slo_ms: float | None = None, threads: int = 0, backend_options: dict[str, str] | None = None,
            calibration: str | None = None, budget: float | None = None,
            trial_load: bool = True, progress: Callable[[str], None] = lambda msg: None) -> Prepared:
    """Everything ``serve deploy`` writes for one model version; raises before writing anything,
    and on a bad argument before any conversion (``serve.preflight``).

    ``calibration`` (a built-in set such as "mnist" or an .npz file, see models/quantize)
    and ``budget`` feed ``--precision auto`` and int8's static calibration; formats for a
    model that runs on the fpga are scored with its activation quantisation.
    """
    backend_options = dict(backend_options or {})
    config = check_deploy(sources, name=name, backend=backend, precision=precision, instances=instances,
                          threads=threads, slo_ms=slo_ms, backend_options=backend_options,
                          calibration=calibration, budget=budget, trial_load=trial_load)
    devices = config.backends
    model, _, notes = load_source(sources, framework, progress, input_shapes)
    layer_formats: dict[str, str] = {}
    if precision != "fp32":
        from models.quantize import ActivationRule, load_calibration, quantize_model

        progress(f"quantising to {precision}")
        data = load_calibration(calibration) if calibration else None
        kwargs = {} if budget is None else {"budget": budget}
        quantized = quantize_model(model, precision, calibration=data,
                                   activations=ActivationRule.for_backends(devices), **kwargs)
        model, layer_formats = quantized.model, dict(quantized.layer_formats)
        backend_options = {**quantized.backend_options, **backend_options}
        report = quantized.report
        accuracy = (f", accuracy {report.accuracy:.2f}% vs fp32 {report.fp32_accuracy:.2f}% on {report.samples} "
                    f"calibration samples with {report.activations} activations"
                    if report.accuracy is not None and report.fp32_accuracy is not None else "")
        notes.append(f"quantised to {precision}: {report.average_bits:.2f} bits per weight over "
                     f"{len(report.layers)} layers, {report.size_fp32_bytes / 1e3:.0f} kB -> "
                     f"{report.size_bytes / 1e3:.0f} kB{accuracy}")
    inputs, outputs = read_signature(model)
    config = config.replace(inputs=batch_one(inputs), outputs=batch_one(outputs),
                            layer_formats=layer_formats, backend_options=backend_options)
    model_bytes = model.SerializeToString()
    compiled = {}
    if trial_load:
        progress(f"checking that the {backend} backend(s) load it")
        compiled = check_loads(config, model_bytes)
    return Prepared(config, model_bytes, tuple(notes), compiled)
