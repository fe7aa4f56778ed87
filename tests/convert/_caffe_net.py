"""Tiny Caffe nets for the tests: a prototxt string and weights, written as the real
thing (text prototxt + binary caffemodel through the generated caffe_pb2)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from google.protobuf import text_format

from models.convert import convert
from models.convert.caffe_proto import caffe_pb2

from ._util import run_onnx


def input_layer(shape, top="data") -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "{top}" type: "Input" top: "{top}" input_param {{ shape {{ {dims} }} }} }}\n'


def write_net(folder: Path, prototxt: str, weights: dict[str, list[np.ndarray]], v1: bool = False):
    """Write ``net.prototxt`` and ``net.caffemodel`` (blobs by layer name) into ``folder``."""
    proto = folder / "net.prototxt"
    proto.write_text(prototxt)
    # Caffe saves every layer of the net, weighted or not, as the prototxt has them.
    net = caffe_pb2.NetParameter()
    text_format.Parse(prototxt, net)
    layers = {layer.name: layer for layer in (net.layers if v1 else net.layer)}
    for name, arrays in weights.items():
        layer = layers.get(name) or (net.layers.add(name=name) if v1 else net.layer.add(name=name))
        for array in arrays:
            blob = layer.blobs.add()
            blob.shape.dim.extend(array.shape)
            blob.data.extend(np.asarray(array, np.float32).ravel().tolist())
    model = folder / "net.caffemodel"
    model.write_bytes(net.SerializeToString())
    return proto, model


def run_net(folder: Path, prototxt: str, weights, feeds: dict[str, np.ndarray], **convert_args):
    """Convert the net and run it under onnxruntime; returns (outputs, ConvertResult)."""
    proto, model = write_net(folder, prototxt, weights)
    result = convert([proto, model], **convert_args)
    return run_onnx(result.model, feeds), result
