"""Caffe input the converter cannot take fails with a ConversionError that names the
file, the layer and what was expected; the V1 format and legacy inputs still convert."""
from __future__ import annotations

import numpy as np
import pytest

from models.convert import ConversionError, convert
from models.convert.caffe_proto import regen

from ._caffe_net import input_layer, run_net, write_net

RELU = 'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'
CONV = 'layer { name: "conv1" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 kernel_size: 3 } }\n'


def test_committed_caffe_pb2_is_fresh(tmp_path):
    fresh = regen.generate(tmp_path)
    committed = regen.PROTO_DIR / regen.OUTPUT
    assert committed.read_text() == fresh.read_text(), (
        f"{committed} is stale: run `python -m models.convert.caffe_proto.regen` and commit the result"
    )


def test_unsupported_layer_names_layer_and_type(tmp_path):
    text = input_layer((1, 1, 4, 4)) + 'layer { name: "weird1" type: "SPP" bottom: "data" top: "s" }'
    proto, model = write_net(tmp_path, text, {})
    with pytest.raises(ConversionError, match=r"layer 'weird1' has type 'SPP'.*supported: .*Convolution"):
        convert([proto, model])


def test_missing_weights_name_the_layer(tmp_path):
    proto, model = write_net(tmp_path, input_layer((1, 1, 4, 4)) + CONV, {})
    with pytest.raises(ConversionError, match=r"layer 'conv1' \(Convolution\) needs weights and bias"):
        convert([proto, model])


def test_wrong_weight_shape_names_layer_and_shapes(tmp_path):
    weights = {"conv1": [np.zeros((2, 1, 5, 5), np.float32), np.zeros(2, np.float32)]}
    proto, model = write_net(tmp_path, input_layer((1, 1, 6, 6)) + CONV, weights)
    with pytest.raises(ConversionError, match=r"conv1.*weight has shape \(2, 1, 5, 5\), expected \(2, 1, 3, 3\)"):
        convert([proto, model])


def test_corrupt_caffemodel(tmp_path):
    proto, model = write_net(tmp_path, input_layer((1, 1, 4, 4)) + CONV, {})
    model.write_bytes(b"\xff\xff\xff\xff garbage")
    with pytest.raises(ConversionError, match=r"net.caffemodel: not a binary caffemodel"):
        convert([proto, model])


def test_corrupt_prototxt_names_line(tmp_path):
    proto, model = write_net(tmp_path, input_layer((1, 1, 4, 4)), {})
    proto.write_text(input_layer((1, 1, 4, 4)) + 'layer { name: "x" type: "ReLU" bottom: "data" top: "x" bogus_param { } }')
    with pytest.raises(ConversionError, match=r"net.prototxt: .*2:.*bogus_param"):
        convert([proto, model])


def test_missing_bottom_blob_names_layer_and_blob(tmp_path):
    text = input_layer((1, 1, 4, 4)) + 'layer { name: "r" type: "ReLU" bottom: "nothere" top: "r" }'
    proto, model = write_net(tmp_path, text, {})
    with pytest.raises(ConversionError, match=r"layer 'r' reads blob 'nothere'"):
        convert([proto, model])


def test_prototxt_without_caffemodel(tmp_path):
    (tmp_path / "deploy.prototxt").write_text(input_layer((1, 1, 4, 4)))
    with pytest.raises(ConversionError, match=r"expected one \.caffemodel"):
        convert(tmp_path / "deploy.prototxt")


def test_a_prototxt_alone_says_which_caffemodel_it_took(tmp_path):
    proto, model = write_net(tmp_path, input_layer((1, 2)) + RELU, {})
    summary = convert(proto).summary
    assert summary.source == f"{proto}, {model}"
    assert f"weights from {model}, the one .caffemodel beside net.prototxt" in summary.notes
    # Both given, or their folder: the source line names both files; nothing was guessed.
    for given in ([proto, model], tmp_path):
        summary = convert(given).summary
        assert summary.source == f"{proto}, {model}" and not any("beside" in n for n in summary.notes)


def test_training_only_layers_are_skipped_and_loss_layers_rejected(tmp_path):
    text = (input_layer((1, 3)) +
            'layer { name: "acc" type: "Accuracy" bottom: "data" bottom: "data" top: "acc" include { phase: TRAIN } }\n'
            'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }')
    x = np.array([[-1, 0, 2]], np.float32)
    (y,), _ = run_net(tmp_path, text, {}, {"data": x})
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    text += '\nlayer { name: "loss" type: "SoftmaxWithLoss" bottom: "r" bottom: "data" top: "loss" }'
    proto, model = write_net(tmp_path, text, {})
    with pytest.raises(ConversionError, match=r"layer 'loss' has type 'SoftmaxWithLoss'"):
        convert([proto, model])


def test_v1_layers_format_and_legacy_inputs(tmp_path):
    # Caffe before 2015: `layers` with enum types, inputs declared by input/input_dim.
    text = ('name: "old"\ninput: "data"\ninput_dim: 10\ninput_dim: 2\ninput_dim: 4\ninput_dim: 4\n'
            'layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "c" convolution_param { num_output: 3 kernel_size: 3 } }\n'
            'layers { name: "relu1" type: RELU bottom: "c" top: "c" }\n'
            'layers { name: "pool1" type: POOLING bottom: "c" top: "p" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n')
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((3, 2, 3, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    proto, model = write_net(tmp_path, text, {"conv1": [w, b]}, v1=True)
    result = convert([proto, model])
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    from . import numpy_caffe as ref
    from ._util import run_onnx

    (y,) = run_onnx(result.model, {"data": x})
    want = ref.pool2d(np.maximum(ref.conv2d(x, w, b), 0), (2, 2), (2, 2), (0, 0))
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
    assert result.summary.inputs[0].shape == (1, 2, 4, 4)
