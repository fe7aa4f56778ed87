"""The real LeNet caffemodel: converted, it matches a numpy forward pass of its own blobs
and classifies real MNIST digits as Caffe's tutorial model does (about 99%)."""
from __future__ import annotations

import numpy as np
import pytest

from models.convert import convert
from models.convert.caffe import load_caffemodel

from . import numpy_caffe as ref
from ._util import run_onnx, shared_model

# LeNet's training data layer scaled pixels by 1/256; the deploy net expects that input.
CAFFE_MNIST_SCALE = 0.00390625


def lenet_numpy(blobs, x):
    """LeNet's forward pass from lenet.prototxt, written out with the caffemodel's blobs."""
    w = lambda name, i: blobs[name][i].astype(np.float64)
    h = ref.conv2d(x, w("conv1", 0), w("conv1", 1))
    h = ref.pool2d(h, (2, 2), (2, 2), (0, 0))
    h = ref.conv2d(h, w("conv2", 0), w("conv2", 1))
    h = ref.pool2d(h, (2, 2), (2, 2), (0, 0))
    h = np.maximum(ref.inner_product(h, w("ip1", 0), w("ip1", 1)), 0)
    return ref.softmax(ref.inner_product(h, w("ip2", 0), w("ip2", 1)))


@pytest.fixture(scope="module")
def lenet():
    folder = shared_model("caffe_lenet")
    result = convert([folder / "lenet.prototxt", folder / "lenet_iter_10000.caffemodel"])
    return result, load_caffemodel(folder / "lenet_iter_10000.caffemodel")


def test_lenet_matches_numpy_forward_pass(lenet, mnist_digits):
    result, blobs = lenet
    images, _ = mnist_digits
    worst = 0.0
    for image in images[::250]:  # 20 real digits
        x = (image * CAFFE_MNIST_SCALE).reshape(1, 1, 28, 28).astype(np.float32)
        (got,) = run_onnx(result.model, {"data": x})
        want = lenet_numpy(blobs, x.astype(np.float64))
        worst = max(worst, float(np.abs(got - want).max()))
    assert worst < 1e-5, worst


def test_lenet_accuracy_on_real_digits(lenet, mnist_digits):
    result, _ = lenet
    images, labels = mnist_digits
    import onnxruntime as ort

    session = ort.InferenceSession(result.model.SerializeToString(), providers=["CPUExecutionProvider"])
    predictions = np.array([
        session.run(None, {"data": (image * CAFFE_MNIST_SCALE).reshape(1, 1, 28, 28)})[0].argmax()
        for image in images
    ])
    accuracy = float((predictions == labels).mean())
    print(f"LeNet (Caffe) accuracy on {len(labels)} MNIST digits: {accuracy:.4f}")
    assert accuracy >= 0.985


def test_lenet_summary(lenet):
    summary = lenet[0].summary
    assert summary.framework == "caffe"
    assert [(s.name, s.shape) for s in summary.inputs] == [("data", (1, 1, 28, 28))]
    assert [(s.name, s.shape) for s in summary.outputs] == [("prob", (1, 10))]
    assert summary.parameters == 20 * 25 + 20 + 50 * 20 * 25 + 50 + 800 * 500 + 500 + 5000 + 10
    assert summary.host_ops == ("Softmax",)
