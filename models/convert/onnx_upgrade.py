"""Bring an ONNX model of any age to the project's opset, checked and shape-inferred.

Old exporters (CNTK 2.x wrote opsets 7-9 at IR 3) produce models that load, but carry
habits that break later stages. Each fix here is named, and the names of the fixes a
model needed are reported back so that ``serve convert`` can say what it changed.
"""
from __future__ import annotations

import onnx
import onnx.checker
import onnx.shape_inference
import onnx.version_converter

from .errors import ConversionError
from .onnx_io import TARGET_OPSET, finalize, main_opset

# Names of the exporter quirks, as reported in ConvertResult.summary.notes.
QUIRK_INITIALIZER_INPUTS = "initializers-listed-as-inputs"
QUIRK_UNNAMED_NODES = "unnamed-nodes"
QUIRK_AUTO_PAD = "auto-pad-made-explicit"


def drop_initializer_inputs(model: onnx.ModelProto) -> bool:
    """Remove graph inputs that are also initializers.

    IR < 4 required every weight to be listed as a graph input too. Left in place, the
    server would advertise each weight as a request input, and onnxruntime treats them
    as overridable, so it will not constant-fold through them.
    """
    weights = {init.name for init in model.graph.initializer}
    keep = [inp for inp in model.graph.input if inp.name not in weights]
    if len(keep) == len(model.graph.input):
        return False
    del model.graph.input[:]
    model.graph.input.extend(keep)
    # IR 4 is the first that lets an initializer stand alone; below it, the version
    # converter would call the weights undefined.
    model.ir_version = max(model.ir_version, 4)
    return True


def name_nodes(model: onnx.ModelProto) -> bool:
    """Give every unnamed node a unique name: the quantiser keys per-layer formats by it."""
    taken = {node.name for node in model.graph.node if node.name}
    changed = False
    for index, node in enumerate(model.graph.node):
        if node.name:
            continue
        name = f"{node.op_type}_{index}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)
        changed = True
    return changed


def upgrade_opset(model: onnx.ModelProto, source: str, target: int = TARGET_OPSET) -> onnx.ModelProto:
    """Convert to ``target`` with onnx's version converter; newer models are left alone."""
    if main_opset(model) >= target:
        return model
    try:
        return onnx.version_converter.convert_version(model, target)
    except Exception as exc:
        raise ConversionError(
            f"{source}: cannot upgrade from opset {main_opset(model)} to {target} ({exc})"
        ) from exc


def check(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """Run the ONNX checker and strict shape inference; return the shape-inferred model."""
    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise ConversionError(f"{source}: the ONNX checker rejects the model: {exc}") from exc


def explicit_pads(model: onnx.ModelProto) -> bool:
    """Replace ``auto_pad`` SAME_UPPER/SAME_LOWER/VALID by explicit ``pads``.

    CNTK writes ``auto_pad=SAME_UPPER`` on its convolutions. It is legal ONNX, but the
    FPGA compiler and the quantiser read ``pads`` only; the numbers come from inferred
    input shapes, so nodes whose spatial sizes are unknown are left as they are.
    """
    shapes = _static_shapes(model)
    changed = False
    for node in model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"):
            continue
        if node.op_type == "ConvTranspose":
            continue  # its SAME semantics depend on output_shape; leave it to the runtime
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        mode = attrs.get("auto_pad", b"NOTSET").decode()
        if mode == "NOTSET":
            continue
        in_shape = shapes.get(node.input[0])
        if in_shape is None:
            continue
        spatial = in_shape[2:]
        kernel = attrs.get("kernel_shape") or _kernel_from_weight(model, node)
        if kernel is None:
            continue
        strides = attrs.get("strides", [1] * len(spatial))
        dilations = attrs.get("dilations", [1] * len(spatial))
        begins, ends = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            if mode == "VALID":
                total = 0
            else:
                out = -(-size // s)
                total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small, large = total // 2, total - total // 2
            begins.append(small if mode != "SAME_LOWER" else large)
            ends.append(large if mode != "SAME_LOWER" else small)
        keep = [a for a in node.attribute if a.name not in ("auto_pad", "pads")]
        del node.attribute[:]
        node.attribute.extend(keep)
        node.attribute.append(onnx.helper.make_attribute("pads", begins + ends))
        changed = True
    return changed


def normalize(model: onnx.ModelProto, source: str, cleanup_tool: str | None = "auto"):
    """Upgrade, fix quirks, check, clean up and shape-infer ``model``.

    Returns ``(model, notes)`` where ``notes`` lists the quirk fixes applied and the
    clean-up tool used. ``cleanup_tool`` is ``"auto"``, ``"onnxsim"``, ``"ort"`` or None.
    """
    from .cleanup import cleanup  # late: keeps onnxsim's import cost off `serve --help`

    notes: list[str] = []
    if drop_initializer_inputs(model):
        notes.append(QUIRK_INITIALIZER_INPUTS)
    if name_nodes(model):
        notes.append(QUIRK_UNNAMED_NODES)
    old = main_opset(model)
    model = upgrade_opset(model, source)
    if main_opset(model) != old:
        notes.append(f"opset {old} -> {main_opset(model)}")
    model = check(finalize(model), source)
    if cleanup_tool:
        model, tool = cleanup(model, source, cleanup_tool)
        notes.append(f"cleaned up with {tool}")
    model = check(finalize(model), source)
    if explicit_pads(model):
        notes.append(QUIRK_AUTO_PAD)
        model = check(model, source)
    return model, notes


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Map value name -> shape for every value whose dimensions are all known."""
    shapes = {}
    for info in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        dims = info.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = [d.dim_value for d in dims]
    return shapes


def _kernel_from_weight(model: onnx.ModelProto, node: onnx.NodeProto):
    for init in model.graph.initializer:
        if len(node.input) > 1 and init.name == node.input[1]:
            return list(init.dims[2:])
    return None
