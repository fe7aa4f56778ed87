"""ONNX plumbing the quantiser needs: opset, IR version, weight discovery, runs.

Blocked ``DequantizeLinear`` needs opset 21. Upgrading old models (CNTK's opset 8) and
choosing the IR version belong to ``models.convert``; we call its functions rather than
keep a second copy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from models.convert import TARGET_OPSET
from models.convert.onnx_io import finalize
from models.convert.onnx_upgrade import drop_initializer_inputs, upgrade_opset

assert TARGET_OPSET >= 21, "blocked DequantizeLinear needs opset 21"


@dataclass(frozen=True, slots=True)
class WeightRef:
    """A matrix-unit weight and how it is blocked.

    ``matrix_shape`` is the 2-D view the matrix unit multiplies by (a conv kernel
    ``[O, I, kh, kw]`` is ``[O, I*kh*kw]``, the im2col layout); ``block_axis`` is that
    view's reduction axis, along which blocks share a scale.
    """

    name: str
    shape: tuple[int, ...]
    matrix_shape: tuple[int, int]
    block_axis: int

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


def _fold_constant_reshapes(graph: onnx.GraphProto) -> None:
    """Replace ``Reshape(initializer, constant shape)`` with a reshaped initializer, so a
    weight CNTK reshapes before a MatMul is seen as that MatMul's weight."""
    inits = {t.name: t for t in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type == "Reshape" and len(node.input) == 2 and all(i in inits for i in node.input):
            data = numpy_helper.to_array(inits[node.input[0]])
            shape = [int(s) for s in numpy_helper.to_array(inits[node.input[1]])]
            shape = [data.shape[i] if s == 0 else s for i, s in enumerate(shape)]  # 0: keep dim
            graph.initializer.append(numpy_helper.from_array(data.reshape(shape), node.output[0]))
            inits[node.output[0]] = graph.initializer[-1]
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    unused = [t for t in graph.initializer if t.name not in used]
    for t in unused:
        graph.initializer.remove(t)


def prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy ready to quantise: initializers no longer graph inputs (IR 3 models list
    them, and an input weight could be overridden at run time), opset >= 21, constant
    reshapes of weights folded (``models.convert``'s clean-up usually did that already),
    the project's IR version."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    drop_initializer_inputs(out)
    out = upgrade_opset(out, model.graph.name or "model")
    _fold_constant_reshapes(out.graph)
    return finalize(out)


def find_weights(model: onnx.ModelProto) -> list[WeightRef]:
    """Float32 initializers the matrix unit multiplies by (Conv, MatMul, Gemm weights)."""
    inits = {t.name: t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    found: dict[str, WeightRef] = {}
    for node in model.graph.node:
        if len(node.input) < 2 or node.input[1] not in inits or node.input[1] in found:
            continue
        name = node.input[1]
        shape = tuple(inits[name].dims)
        if node.op_type == "Conv" and len(shape) >= 3:
            ref = WeightRef(name, shape, (shape[0], int(np.prod(shape[1:]))), 1)
        elif node.op_type == "MatMul" and len(shape) == 2:
            ref = WeightRef(name, shape, (shape[0], shape[1]), 0)
        elif node.op_type == "Gemm" and len(shape) == 2:
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            ref = WeightRef(name, shape, (shape[0], shape[1]), 1 if trans_b else 0)
        else:
            continue
        found[name] = ref
    return list(found.values())


def initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise KeyError(name)


def exact_session_options():
    """Session options under which onnxruntime computes with the dequantised weights.

    onnxruntime's CPU provider fuses blocked int4/int8 ``DequantizeLinear -> MatMul``
    into ``MatMulNBits`` and by default (accuracy level 4) also quantises the
    *activations* to int8 there; level 0 keeps float activations.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return options


def session(model: onnx.ModelProto, exact: bool = True):
    """An onnxruntime CPU session for ``model`` (exact options unless told otherwise)."""
    import onnxruntime as ort

    options = exact_session_options() if exact else None
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run(sess, samples: np.ndarray) -> np.ndarray:
    """First output for each sample (batch 1 each, as the server runs them), stacked."""
    feed = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in feed.shape]
    name = feed.name
    out = [sess.run(None, {name: s.reshape(shape)})[0] for s in samples.astype(np.float32)]
    return np.concatenate(out, axis=0)
