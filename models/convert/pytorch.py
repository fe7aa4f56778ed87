"""PyTorch (TorchScript file or pickled ``nn.Module``) to ONNX through ``torch.onnx``.

Needs the ``[torch]`` extra; torch is imported only here. TorchScript records no input
shapes, so the caller gives them (``input_shapes={"image": [1, 1, 28, 28]}``); the
dict's keys become the ONNX input names, in order.

The TorchScript-based exporter (``dynamo=False``) is used: it is the only one that
takes a ScriptModule (torch.export cannot trace one), it needs no onnxscript, and it
exports in a fraction of a second. torch >= 2.9 calls it legacy but still ships it.
"""
from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import onnx

from .errors import ConversionError

TORCH_OPSET = 18  # the legacy exporter's newest; normalize() upgrades to TARGET_OPSET


def _import_torch():
    try:
        import torch
    except ImportError as exc:
        raise ConversionError("converting PyTorch models needs the [torch] extra: pip install 'bwserve[torch]'") from exc
    return torch


def load_module(path: Path):
    """A TorchScript archive via ``torch.jit.load``; anything else via ``torch.load``.

    A pickled ``nn.Module`` runs code from the file when loaded (that is how pickle
    works) and needs its class importable: convert only files you trust.
    """
    torch = _import_torch()
    if not zipfile.is_zipfile(path):
        raise ConversionError(f"{path}: not a PyTorch file (TorchScript and torch.save write zip archives)")
    names = zipfile.ZipFile(path).namelist()
    try:
        if any(n.endswith("constants.pkl") for n in names):
            return torch.jit.load(str(path), map_location="cpu")
        module = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ConversionError(f"{path}: torch could not load it: {exc}") from exc
    if not isinstance(module, torch.nn.Module):
        raise ConversionError(
            f"{path}: holds a {type(module).__name__}, not a module (a state_dict has no graph); "
            "save the model with torch.jit.script(model).save(path) or torch.save(model, path)"
        )
    return module


def torch_to_onnx(
    path: Path,
    input_shapes: dict[str, Sequence[int | str]] | None = None,
    dynamic_batch: bool = False,
) -> onnx.ModelProto:
    """Export the module in ``path`` with example inputs of ``input_shapes`` (float32)."""
    if not input_shapes:
        raise ConversionError(f"{path}: PyTorch models need input shapes, e.g. --input-shape input=1,3,224,224")
    torch = _import_torch()
    module = load_module(Path(path)).eval()
    names = list(input_shapes)
    try:
        examples = tuple(torch.zeros([int(d) for d in shape]) for shape in input_shapes.values())
    except ValueError as exc:
        raise ConversionError(f"{path}: input shapes must be integers, got {input_shapes}") from exc
    buffer = io.BytesIO()
    dynamic = {name: {0: "N"} for name in names} if dynamic_batch else None
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's own "legacy exporter" notices
            torch.onnx.export(module, examples, buffer, input_names=names, dynamic_axes=dynamic,
                              opset_version=TORCH_OPSET, dynamo=False, do_constant_folding=True)
    except Exception as exc:
        raise ConversionError(f"{path}: torch.onnx could not export the module with inputs {input_shapes}: {exc}") from exc
    return onnx.load_model_from_string(buffer.getvalue())
