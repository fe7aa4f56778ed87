"""Caffe deploy net (prototxt) + trained weights (caffemodel) to ONNX.

Built on Caffe's own schema (``caffe_proto/caffe.proto``), so nothing from Caffe needs
installing. Layers are emitted in prototxt order by the functions in
``caffe_layers``, ``caffe_simple_layers`` and ``caffe_pooling``; weights are looked
up by layer name in the caffemodel (which usually holds the training net, with data
and loss layers the deploy net does not have).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from google.protobuf import text_format
from google.protobuf.message import DecodeError

from . import caffe_layers, caffe_pooling, caffe_simple_layers
from .caffe_graph import GraphBuilder
from .caffe_proto import caffe_pb2
from .errors import ConversionError

EMITTERS = {**caffe_layers.EMITTERS, **caffe_simple_layers.EMITTERS, "Pooling": caffe_pooling.emit_pooling}
SUPPORTED_LAYERS = ("Input", *sorted(EMITTERS))

# V1 enum names of the layers we support, mapped to today's type strings.
_V1_TYPES = {
    "CONCAT": "Concat", "CONVOLUTION": "Convolution", "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout",
    "ELTWISE": "Eltwise", "FLATTEN": "Flatten", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "POOLING": "Pooling", "RELU": "ReLU", "SIGMOID": "Sigmoid", "SOFTMAX": "Softmax", "SPLIT": "Split",
    "SLICE": "Slice", "TANH": "TanH", "DATA": "Data", "SOFTMAX_LOSS": "SoftmaxWithLoss", "ACCURACY": "Accuracy",
}
_V1_PARAMS = ("concat_param", "convolution_param", "dropout_param", "eltwise_param", "inner_product_param",
              "lrn_param", "pooling_param", "relu_param", "sigmoid_param", "softmax_param", "slice_param",
              "tanh_param", "transform_param")


def find_caffe_pair(paths: Sequence[Path]) -> tuple[Path, Path]:
    """(prototxt, caffemodel) from two files, a folder holding both, or a prototxt alone
    with exactly one caffemodel beside it."""
    files: list[Path] = []
    for path in paths:
        files += sorted(path.iterdir()) if path.is_dir() else [path]
    protos = [f for f in files if f.suffix == ".prototxt"]
    models = [f for f in files if f.suffix == ".caffemodel"]
    if len(protos) == 1 and not models:
        models = sorted(protos[0].parent.glob("*.caffemodel"))
    names = ", ".join(map(str, paths))
    if len(protos) != 1:
        raise ConversionError(f"{names}: expected one deploy .prototxt, found {len(protos)}")
    if len(models) != 1:
        raise ConversionError(f"{names}: expected one .caffemodel with the weights, found {len(models)}")
    return protos[0], models[0]


def load_prototxt(path: Path) -> caffe_pb2.NetParameter:
    """Parse a deploy prototxt (text format); errors name the file and line."""
    net = caffe_pb2.NetParameter()
    try:
        text_format.Parse(Path(path).read_text(), net)
    except (text_format.ParseError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{path}: not a Caffe prototxt that bwserve can read: {exc}") from exc
    return net


def load_caffemodel(path: Path) -> dict[str, list[np.ndarray]]:
    """Read a binary caffemodel: layer name -> its blobs as float32 arrays."""
    net = caffe_pb2.NetParameter()
    try:
        net.ParseFromString(Path(path).read_bytes())
    except DecodeError as exc:
        raise ConversionError(f"{path}: not a binary caffemodel (caffe.NetParameter): {exc}") from exc
    layers = _layers(net)
    if not layers:
        raise ConversionError(f"{path}: the caffemodel holds no layers")
    return {layer.name: [blob_to_array(blob) for blob in layer.blobs] for layer in layers}


def blob_to_array(blob: caffe_pb2.BlobProto) -> np.ndarray:
    """A BlobProto as a float32 array, with its shape (or Caffe's legacy 4-D shape)."""
    data = np.asarray(blob.data if len(blob.data) else blob.double_data, dtype=np.float32)
    shape = tuple(blob.shape.dim) if blob.HasField("shape") else (blob.num, blob.channels, blob.height, blob.width)
    if int(np.prod(shape)) != data.size:
        shape = (data.size,)  # a legacy blob without its dims; users reshape per layer anyway
    return data.reshape(shape)


def caffe_to_onnx(
    prototxt: Path,
    caffemodel: Path,
    input_shapes: dict[str, Sequence[int | str]] | None = None,
    dynamic_batch: bool = False,
) -> onnx.ModelProto:
    """Convert a deploy net and its weights to an ONNX model (not yet cleaned up).

    The batch dimension becomes 1, or the symbol "N" with ``dynamic_batch``;
    ``input_shapes`` overrides the prototxt's input shapes by blob name.
    """
    net = load_prototxt(prototxt)
    weights = load_caffemodel(caffemodel)
    builder = GraphBuilder(str(prototxt))
    batch: int | str = "N" if dynamic_batch else 1
    shapes = dict(input_shapes or {})

    def add_input(blob: str, dims: Sequence[int]) -> None:
        dims = list(shapes.pop(blob, dims))
        if not dims:
            raise ConversionError(f"{prototxt}: input {blob!r} has no shape; pass input_shapes")
        builder.add_input(blob, [batch, *dims[1:]])

    for blob, dims in _legacy_inputs(net):
        add_input(blob, dims)
    layers = [layer for layer in _layers(net) if _in_test_phase(layer)]
    skip = set()
    for index, layer in enumerate(layers):
        if index in skip:
            continue
        blobs = weights.get(layer.name) or list(map(blob_to_array, layer.blobs))
        following = layers[index + 1] if index + 1 < len(layers) else None
        if layer.type == "BatchNorm" and caffe_layers.fusable_scale(layer, following, layers[index + 2:]):
            scale_blobs = weights.get(following.name) or list(map(blob_to_array, following.blobs))
            caffe_layers.emit_batch_norm(builder, layer, blobs, following, scale_blobs)
            skip.add(index + 1)
            continue
        if layer.type == "Input":
            given = list(layer.input_param.shape)
            for i, top in enumerate(layer.top):
                shape = given[i] if i < len(given) else (given[0] if given else None)
                add_input(top, list(shape.dim) if shape is not None else [])
            continue
        emit = EMITTERS.get(layer.type)
        if emit is None:
            raise ConversionError(
                f"{prototxt}: layer {layer.name!r} has type {layer.type!r}, which bwserve cannot convert "
                f"(supported: {', '.join(SUPPORTED_LAYERS)})"
            )
        emit(builder, layer, blobs)
    if shapes:
        raise ConversionError(f"{prototxt}: input_shapes names {sorted(shapes)}, which are not inputs of the net")
    model = builder.build(net.name or Path(prototxt).stem)
    model.producer_name, model.producer_version = "bwserve caffe import", "1"
    return model


def _layers(net: caffe_pb2.NetParameter) -> list[caffe_pb2.LayerParameter]:
    """The net's layers, upgrading the V1 ``layers`` format to ``layer`` on the way."""
    if net.layer:
        return list(net.layer)
    return [_upgrade_v1(v1) for v1 in net.layers]


def _upgrade_v1(v1: caffe_pb2.V1LayerParameter) -> caffe_pb2.LayerParameter:
    layer = caffe_pb2.LayerParameter(name=v1.name, bottom=v1.bottom, top=v1.top, blobs=v1.blobs,
                                     include=v1.include, exclude=v1.exclude)
    enum_name = caffe_pb2.V1LayerParameter.LayerType.Name(v1.type)
    layer.type = _V1_TYPES.get(enum_name, f"V1:{enum_name}")
    for field in _V1_PARAMS:
        if v1.HasField(field):
            getattr(layer, field).CopyFrom(getattr(v1, field))
    return layer


def _legacy_inputs(net: caffe_pb2.NetParameter):
    """Inputs declared the pre-Input-layer way: ``input`` + ``input_shape``/``input_dim``."""
    for i, blob in enumerate(net.input):
        if i < len(net.input_shape):
            yield blob, list(net.input_shape[i].dim)
        else:
            yield blob, list(net.input_dim[4 * i:4 * i + 4])


def _in_test_phase(layer: caffe_pb2.LayerParameter) -> bool:
    """Caffe's NetStateRule check, for phase only: deploy runs in the TEST phase."""
    test = caffe_pb2.TEST
    if layer.include:
        return any(not rule.HasField("phase") or rule.phase == test for rule in layer.include)
    return not any(rule.HasField("phase") and rule.phase == test for rule in layer.exclude)
