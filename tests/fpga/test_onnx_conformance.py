"""ONNX's own backend conformance tests (onnx.backend.test) for every op the device runs.

Run at the widest setting (fp32 models: 16-bit mantissas, 63-bit accumulators) and in
strict mode, so a node that would fall back to the host fails its test instead. The
suite's own tolerances (rtol 1e-3, atol 1e-7) apply except where listed in ``WIDENED``.
Exclusions, each with its reason, are in ``EXCLUDED``.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx.backend.base
import onnx.backend.test

from backends.fpga import FpgaBackend
from backends.base import ModelSpec

OPS = ("conv", "basic_conv", "gemm", "matmul", "batchnorm", "add", "sub", "mul", "relu", "sigmoid", "tanh", "neg",
       "maxpool", "averagepool", "globalaveragepool", "globalmaxpool", "flatten", "reshape", "transpose",
       "squeeze", "unsqueeze", "identity", "dropout", "softmax", "concat", "lstm", "gru")

# test-name pattern -> why it is not run on the fpga backend.
EXCLUDED = {
    r"_(u?int\d+|bool|double|float16|bfloat16)(_|$)": "integer, double and half tensors: the device computes in float32",
    r"^test_(matmulinteger|convinteger|convtranspose|qlinear|mul_uint|add_uint)": "a different op (integer/transposed conv)",
    r"_expanded(_ver\d+)?$": "function expansions exercise other ops (ReduceMean, Shape, ...)",
    r"^test_batchnorm_.*training_mode": "training-mode BatchNormalization (batch statistics, running-mean outputs)",
    r"^test_dropout_default_mask": "Dropout's mask output (the device runs inference: Dropout is identity)",
    r"^test_identity_(opt|sequence)": "optional and sequence types",
    r"^test_maxpool_with_argmax": "MaxPool's Indices output",
    r"^test_lstm_with_peepholes": (
        "its sequence_lens is a run-time int32 input: the unrolled program needs the lengths at compile time "
        "(peepholes themselves are tested in test_rnn)"),
    r"^test_(reshape|squeeze|unsqueeze)_": (
        "the target shape / axes are a run-time graph input of these test models; the compiler needs "
        "static shapes (with a constant shape these are a free Move: test_compiler, the cntk model)"),
}
WIDENED: dict[str, tuple[float, float]] = {}


class _Rep(onnx.backend.base.BackendRep):
    def __init__(self, backend: FpgaBackend, inputs: list[str], outputs: list[str]):
        self.backend, self.inputs, self.outputs = backend, inputs, outputs

    def run(self, inputs, **kwargs):
        out = self.backend.run(dict(zip(self.inputs, inputs)))
        return [out[name] for name in self.outputs]


class FpgaOnnxBackend(onnx.backend.base.Backend):
    """The fpga backend behind onnx.backend.base.Backend, in strict mode."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> _Rep:
        super().prepare(model, device, **kwargs)
        backend = FpgaBackend(ModelSpec(name="conformance", options={"strict": "1"}))
        backend.load_model(model)
        inits = {t.name for t in model.graph.initializer}
        inputs = [v.name for v in model.graph.input if v.name not in inits]
        return _Rep(backend, inputs, [v.name for v in model.graph.output])

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


backend_test = onnx.backend.test.BackendTest(FpgaOnnxBackend, __name__)
backend_test.include(rf"^test_({'|'.join(OPS)})(_.*)?_cpu$")
for pattern in EXCLUDED:
    backend_test.exclude(pattern.replace("$", "_cpu$") if pattern.endswith("$") else pattern)
globals().update(backend_test.enable_report().test_cases)
