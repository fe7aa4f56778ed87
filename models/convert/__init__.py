"""Model import: CNTK, Caffe, TensorFlow, PyTorch and ONNX models to one clean ONNX form.

Python API (what ``serve deploy`` calls)::

    from models.convert import convert, detect_framework, ConversionError

    result = convert(Path("lenet.prototxt"))          # framework detected from the files
    result = convert([Path("deploy.prototxt"), Path("w.caffemodel")], framework="caffe")
    result.model      # onnx.ModelProto: opset TARGET_OPSET, IR TARGET_IR_VERSION, checked,
                      # shapes inferred, constants and BatchNorms folded
    result.summary    # ConvertSummary: ops, opset, inputs/outputs with shapes, parameters,
                      # ops that run on the host under fpga, notes on what was fixed
    save(result.model, "model.onnx")                  # writes with the project's IR version

``src`` is one path or a list of paths:

- ``onnx`` / ``cntk``: an ``.onnx`` file (any opset; CNTK's own ONNX export is the CNTK
  path, see README.md beside this file). It is upgraded to ``TARGET_OPSET``.
- ``caffe``: ``deploy.prototxt`` + ``.caffemodel`` (a list of both, a folder holding
  both, or the prototxt alone when exactly one caffemodel lies beside it).
- ``tf``: a frozen GraphDef ``.pb``, a SavedModel folder, or a Keras ``.keras``/``.h5``
  file; needs the ``[tf]`` extra. Frozen graphs take inputs/outputs from ``inputs=`` and
  ``outputs=`` or, by default, their placeholders and their unconsumed nodes.
- ``torch``: a TorchScript file or a pickled ``nn.Module``; needs the ``[torch]`` extra
  and ``input_shapes`` (TorchScript does not record input shapes).

Every failure is a :class:`ConversionError` whose message names the file, layer or node.
``progress``, if given, is called with a short message at each stage.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx

from .detect import FRAMEWORKS, detect_framework
from .errors import ConversionError
from .onnx_io import TARGET_IR_VERSION, TARGET_OPSET, save
from .summary import FPGA_OPS, ConvertSummary

__all__ = [
    "FPGA_OPS", "FRAMEWORKS", "TARGET_IR_VERSION", "TARGET_OPSET", "ConversionError",
    "ConvertResult", "ConvertSummary", "convert", "detect_framework", "save",
]

PathLike = Path | str


@dataclass(frozen=True)
class ConvertResult:
    """A converted model and what ``serve convert`` prints about it."""

    model: onnx.ModelProto
    summary: ConvertSummary


def convert(
    src: PathLike | Sequence[PathLike],
    framework: str | None = None,
    *,
    input_shapes: dict[str, Sequence[int | str]] | None = None,
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str] | None = None,
    dynamic_batch: bool = False,
    cleanup: str | None = "auto",
    progress: Callable[[str], None] | None = None,
) -> ConvertResult:
    """Convert ``src`` to a checked ONNX model at the project's opset and IR version.

    ``framework`` is one of ``FRAMEWORKS``, or None to detect it. ``input_shapes`` maps
    input names to shapes (torch needs it; for Caffe it overrides the prototxt's; for TF
    it is tf2onnx's input shape, which a placeholder of unknown rank needs; for ONNX it
    sets symbolic dimensions). ``dynamic_batch`` keeps the batch dimension symbolic
    ("N" for Caffe and torch) instead of 1. ``cleanup`` picks the graph simplifier: "auto", "onnxsim", "ort" or None.
    """
    from .onnx_upgrade import normalize
    from .summary import summarize

    say = progress or (lambda message: None)
    paths = [Path(p) for p in ([src] if isinstance(src, (str, Path)) else src)]
    if not paths:
        raise ConversionError("no source files given")
    name = ", ".join(map(str, paths))
    framework = framework or detect_framework(paths if len(paths) > 1 else paths[0])
    if framework not in FRAMEWORKS:
        raise ConversionError(f"unknown framework {framework!r}; expected one of {', '.join(FRAMEWORKS)}")

    found = []
    if framework == "caffe":  # the summary names the weights file, given or found
        from .caffe import find_caffe_pair

        prototxt, caffemodel = find_caffe_pair(paths)
        if caffemodel not in paths and caffemodel.parent not in paths:
            found.append(f"weights from {caffemodel}, the one .caffemodel beside {prototxt.name}")
        paths = [prototxt, caffemodel]
        name = ", ".join(map(str, paths))
    say(f"importing {name} ({framework})")
    model = _import(framework, paths, name, input_shapes, inputs, outputs, dynamic_batch)
    notes = found + _fix_interface(model, framework, dynamic_batch)
    say("upgrading, checking and cleaning up the ONNX graph")
    model, more_notes = normalize(model, name, cleanup)
    return ConvertResult(model, summarize(model, name, framework, notes + more_notes))


def _fix_interface(model: onnx.ModelProto, framework: str, dynamic_batch: bool) -> list[str]:
    """TF and torch exports leave ``:0`` suffixes and symbolic batch dims; name the fixes."""
    from .onnx_edit import QUIRK_BATCH_FIXED, QUIRK_PORT_SUFFIX, fix_batch, strip_port_suffix

    notes = []
    if framework == "tf" and strip_port_suffix(model):
        notes.append(QUIRK_PORT_SUFFIX)
    if framework in ("tf", "torch") and not dynamic_batch and fix_batch(model, 1):
        notes.append(QUIRK_BATCH_FIXED)
    return notes


def _import(framework, paths, name, input_shapes, inputs, outputs, dynamic_batch) -> onnx.ModelProto:
    if framework in ("onnx", "cntk"):
        if len(paths) != 1 or paths[0].suffix.lower() in (".model", ".dnn"):
            raise ConversionError(
                f"{name}: CNTK models are imported through CNTK's own ONNX export; in CNTK run "
                "model.save('model.onnx', format=cntk.ModelFormat.ONNX) and convert that file"
            )
        path = paths[0]
        if path.is_dir():
            path = next(path.glob("*.onnx"))
        from .onnx_io import load

        model = load(path)
        if input_shapes:
            from .shapes import override_onnx_dims

            override_onnx_dims(model, input_shapes, name)
        return model
    if framework == "caffe":
        from .caffe import caffe_to_onnx, find_caffe_pair

        prototxt, caffemodel = find_caffe_pair(paths)
        return caffe_to_onnx(prototxt, caffemodel, input_shapes=input_shapes, dynamic_batch=dynamic_batch)
    if len(paths) != 1:
        raise ConversionError(f"{name}: a {framework} model is one file or folder, got {len(paths)}")
    if framework == "tf":
        from .tf import tf_to_onnx

        return tf_to_onnx(paths[0], inputs=inputs, outputs=outputs, input_shapes=input_shapes,
                          dynamic_batch=dynamic_batch)
    from .pytorch import torch_to_onnx

    return torch_to_onnx(paths[0], input_shapes=input_shapes, dynamic_batch=dynamic_batch)
