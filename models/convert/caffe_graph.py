"""An ONNX graph under construction from Caffe layers: blob names, weights, shapes.

Caffe blobs are mutable names (an in-place ReLU writes its result back to its input
blob); ONNX values are written once. Each write of a blob gets a fresh value name
``blob@k``; at the end the last version of every blob takes the plain blob name, so
the graph's inputs and outputs are called what the prototxt calls them.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import ConversionError
from .onnx_io import TARGET_IR_VERSION, TARGET_OPSET


class GraphBuilder:
    """Collects nodes and initializers and answers shape questions as the graph grows."""

    def __init__(self, source: str):
        self.source = source
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self._current: dict[str, str] = {}       # Caffe blob -> ONNX value now holding it
        self._versions: dict[str, int] = {}
        self._owner: dict[str, str] = {}         # ONNX value -> Caffe blob it is a version of
        self._read_blobs: set[str] = set()     # blobs a later layer reads: not outputs
        self._names: set[str] = set()
        self._shapes: dict[str, tuple] | None = None

    # -- blobs ---------------------------------------------------------------------------
    def add_input(self, blob: str, shape: Sequence[int | str]) -> None:
        value = self._new_version(blob)
        self.inputs.append(helper.make_tensor_value_info(value, onnx.TensorProto.FLOAT, list(shape)))

    def read(self, blob: str, layer: str) -> str:
        """The ONNX value holding ``blob`` now; an error naming ``layer`` if none does."""
        if blob not in self._current:
            raise ConversionError(f"{self.source}: layer {layer!r} reads blob {blob!r}, which no earlier layer produces")
        self._read_blobs.add(blob)
        return self._current[blob]

    def write(self, blob: str) -> str:
        """A fresh ONNX value name that becomes the current version of ``blob``."""
        return self._new_version(blob)

    def temp(self, name: str) -> str:
        """A unique name for a value inside one layer's expansion (e.g. ``conv1/pad``)."""
        return self._unique(name)

    def alias(self, blob: str, value: str) -> None:
        """Make ``blob`` refer to an existing value (Dropout, Split: no node needed)."""
        self._current[blob] = value
        self._read_blobs.discard(blob)

    # -- nodes and weights ---------------------------------------------------------------
    def node(self, op: str, inputs: Sequence[str], outputs: Sequence[str], name: str, **attrs) -> None:
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs), name=self._unique(name), **attrs))
        self._shapes = None

    def const(self, name: str, array: np.ndarray) -> str:
        """Add ``array`` as an initializer and return its (unique) name."""
        name = self._unique(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def shape(self, value: str, layer: str) -> tuple[int | str, ...]:
        """The shape of ``value`` by ONNX shape inference over the graph so far."""
        if self._shapes is None:
            model = self._model(outputs=[])
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
            self._shapes = {}
            for info in list(inferred.graph.input) + list(inferred.graph.value_info):
                dims = info.type.tensor_type.shape.dim
                self._shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims)
        if value not in self._shapes:
            raise ConversionError(f"{self.source}: layer {layer!r}: the shape of its input could not be inferred")
        return self._shapes[value]

    # -- the finished model --------------------------------------------------------------
    def build(self, graph_name: str) -> onnx.ModelProto:
        """Outputs are the blobs no layer reads after their last write (Caffe's own rule)."""
        outputs = []
        for blob in [b for b in self._current if b not in self._read_blobs]:
            value = self._current[blob]
            if self._owner[value] != blob:  # an aliasing layer (Dropout, Split) ends the net
                alias, value = value, self.write(blob)
                self.node("Identity", [alias], [value], f"{blob}/output")
            outputs.append(value)
        if not outputs:
            raise ConversionError(f"{self.source}: the net has no output blob")
        model = self._model(outputs, graph_name)
        model = _rename_final_versions(model, {v: self._owner[v] for v in self._current.values()})
        return _typed_outputs(model)

    def _model(self, outputs: Sequence[str], graph_name: str = "caffe") -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, graph_name, self.inputs,
            [helper.make_empty_tensor_value_info(v) for v in outputs],
            initializer=self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", TARGET_OPSET)],
                                  producer_name="bwserve caffe import")
        model.ir_version = TARGET_IR_VERSION
        return model

    def _new_version(self, blob: str) -> str:
        k = self._versions.get(blob, 0)
        self._versions[blob] = k + 1
        self._names.add(blob)  # reserved: the blob's last version is renamed to it
        value = self._unique(f"{blob}@{k}")
        self._current[blob] = value
        self._owner[value] = blob
        self._read_blobs.discard(blob)
        return value

    def _unique(self, name: str) -> str:
        base, k = name, 1
        while name in self._names:
            name = f"{base}_{k}"
            k += 1
        self._names.add(name)
        return name


def _rename_final_versions(model: onnx.ModelProto, final: dict[str, str]) -> onnx.ModelProto:
    """Rename ``blob@k`` values: the last version of each blob takes the blob's own name."""
    taken = {init.name for init in model.graph.initializer}
    mapping = {v: blob for v, blob in final.items() if blob not in taken}

    def rename(name: str) -> str:
        return mapping.get(name, name)

    for node in model.graph.node:
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    for info in list(model.graph.input) + list(model.graph.output):
        info.name = rename(info.name)
    return model


def _typed_outputs(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give the graph outputs the types and shapes that shape inference finds."""
    inferred = onnx.shape_inference.infer_shapes(model)
    known = {info.name: info for info in inferred.graph.value_info}
    for output in model.graph.output:
        if output.name in known:
            output.CopyFrom(known[output.name])
    return model
