"""PyTorch import through torch.onnx (the [torch] extra): TorchScript and pickled modules
against torch's own forward pass."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from models.convert import ConversionError, convert, detect_framework

from ._util import run_onnx


def test_missing_extra_names_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)
    path = tmp_path / "model.pt"
    path.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
    with pytest.raises(ConversionError, match=r"needs the \[torch\] extra"):
        convert(path, input_shapes={"x": [1, 3]})


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="the [torch] extra is not installed")


def _net(torch):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 10),
    )
    with torch.no_grad():  # non-trivial running statistics, so folding BatchNorm matters
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    return net.eval()


@pytest.mark.parametrize("kind", ["torchscript", "module"])
def test_torch_file_matches_torch(torch, tmp_path, kind):
    net = _net(torch)
    path = tmp_path / "model.pt"
    if kind == "torchscript":
        torch.jit.script(net).save(str(path))
    else:
        torch.save(net, str(path))
    assert detect_framework(path) == "torch"
    result = convert(path, input_shapes={"image": [1, 1, 8, 8]})
    assert [(s.name, s.shape) for s in result.summary.inputs] == [("image", (1, 1, 8, 8))]
    assert "BatchNormalization" not in result.summary.op_counts
    x = np.random.default_rng(0).normal(size=(1, 1, 8, 8)).astype(np.float32)
    (got,) = run_onnx(result.model, {"image": x})
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_dynamic_batch(torch, tmp_path):
    net = _net(torch)
    path = tmp_path / "model.pt"
    torch.jit.script(net).save(str(path))
    result = convert(path, input_shapes={"image": [1, 1, 8, 8]}, dynamic_batch=True)
    x = np.random.default_rng(1).normal(size=(3, 1, 8, 8)).astype(np.float32)
    (got,) = run_onnx(result.model, {"image": x})
    with torch.no_grad():
        np.testing.assert_allclose(got, net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)


def test_state_dict_and_missing_shapes_are_clear_errors(torch, tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(_net(torch).state_dict(), str(path))
    with pytest.raises(ConversionError, match=r"weights.pt: .*state_dict"):
        convert(path, input_shapes={"image": [1, 1, 8, 8]})
    with pytest.raises(ConversionError, match=r"need input shapes"):
        convert(path)
