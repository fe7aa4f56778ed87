"""Tell which framework a model file (or folder, or file pair) came from."""
from __future__ import annotations

import zipfile
from pathlib import Path

from .errors import ConversionError

FRAMEWORKS = ("onnx", "caffe", "tf", "torch", "cntk")

_BY_SUFFIX = {
    ".onnx": "onnx",
    ".prototxt": "caffe",
    ".caffemodel": "caffe",
    ".h5": "tf",
    ".hdf5": "tf",
    ".keras": "tf",
    ".pt": "torch",
    ".pth": "torch",
    ".torchscript": "torch",
    ".model": "cntk",  # CNTK's native format; convert() explains how to export ONNX instead
    ".dnn": "cntk",
}


def detect_framework(path: Path | str | list[Path | str]) -> str:
    """Return ``"onnx"``, ``"caffe"``, ``"tf"``, ``"torch"`` or ``"cntk"`` for ``path``.

    ``path`` may be a file, a folder (a SavedModel, or a folder holding a Caffe
    prototxt + caffemodel pair or a single ONNX file) or a list of files. Extensions
    decide where they are unambiguous; a ``.pb`` is told apart by parsing it (ONNX
    ModelProto vs TensorFlow GraphDef). Raises :class:`ConversionError` if unsure.
    """
    if isinstance(path, (list, tuple)):
        kinds = {detect_framework(p) for p in path}
        if len(kinds) != 1:
            raise ConversionError(f"{', '.join(map(str, path))}: files from different frameworks ({sorted(kinds)})")
        return kinds.pop()
    path = Path(path)
    if not path.exists():
        raise ConversionError(f"{path}: no such file or folder")
    if path.is_dir():
        return _detect_dir(path)
    suffix = path.suffix.lower()
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix]
    if suffix in (".pb", ".pbtxt"):
        return "onnx" if _looks_like_onnx(path) else "tf"
    if _looks_like_onnx(path):
        return "onnx"
    if zipfile.is_zipfile(path):
        names = zipfile.ZipFile(path).namelist()
        if any(n.endswith("data.pkl") or n.endswith("constants.pkl") for n in names):
            return "torch"
        if "config.json" in names:
            return "tf"
    raise ConversionError(f"{path}: cannot tell the framework from the name or contents; pass --from")


def _detect_dir(path: Path) -> str:
    if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
        return "tf"
    if any(path.glob("*.prototxt")) and any(path.glob("*.caffemodel")):
        return "caffe"
    onnx_files = list(path.glob("*.onnx"))
    if len(onnx_files) == 1:
        return "onnx"
    raise ConversionError(
        f"{path}: folder is not a SavedModel, a prototxt + caffemodel pair or a single .onnx file"
    )


def _looks_like_onnx(path: Path) -> bool:
    """A .pb parses as both message types often enough; ONNX is the one with a graph and opsets."""
    import onnx

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:
        return False
    return bool(model.graph.node) and bool(model.opset_import)
