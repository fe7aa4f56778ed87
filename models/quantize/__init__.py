"""Adaptive narrow precision: block floating point (MSFP, ms-fp8/9), OCP MX, int8, fp16.

Python API (what ``serve deploy`` calls)::

    from models.quantize import quantize_model, load_calibration

    calib = load_calibration("mnist", count=1000)          # or an .npz with x (and y)
    result = quantize_model(model, "auto", calibration=calib, budget=0.5)
    result.model          # onnx.ModelProto: standard ONNX (opset 21, the project's IR
                          # version); weights in blocked DequantizeLinear, runs on
                          # onnxruntime CPU/GPU unchanged
    result.layer_formats  # {initializer name: format name} -> ModelConfig.layer_formats
    result.report         # QuantizeReport: per-layer table, bits, sizes, accuracy;
                          # result.report.render() prints it with rich
    result.backend_options  # merge into ModelConfig.backend_options: tells the FPGA
                          # to quantise activations like each layer's weights

    quantize_model(model, "mxfp8_e4m3")                   # one format, no data needed
    quantize_model(model, "auto", calibration=calib, activations="fpga")  # for the fpga

``precision`` is ``"auto"`` or a ``Format`` name (``formats.Format``: msfp16, msfp12,
msfp9, msfp8, mxint8, mxfp8_e4m3, mxfp8_e5m2, mxfp6_e3m2, mxfp6_e2m3, mxfp4_e2m1, int8,
fp16, fp32). ``auto`` needs ``calibration``; ``budget`` is the accuracy drop allowed in
percentage points when the calibration data has labels, else the relative output error
allowed in percent (default 0.5). ``candidates`` limits the formats ``auto`` may pick
(default: every block format, fp16 and fp32; never int8, which quantises activations of
the whole model). ``progress(done, total)`` is called after each calibration run.

``activations`` (an ``ActivationRule``) is what every score is measured under: ``"float"``
(default; cpu and gpu keep float activations) or ``"fpga"``: each Conv/MatMul/Gemm input
quantised to its layer's format as the FPGA does, so that ``auto``'s choice holds its
budget there (``fpga_eval``; ``serve deploy --backend fpga`` sets it, ``serve quantize``
takes ``--activations fpga``). A format that is
harmless on float inputs can cost much more once the inputs share its block scales.
``ActivationRule.for_backends(names)`` picks the rule for a deployment; the report says
which rule its numbers were measured under. int8 is refused under ``"fpga"``.

Only Conv, MatMul and Gemm weights (the matrix unit's operands) are quantised; biases
and everything else stay fp32. The FPGA also quantises activations:
``quantize_activations(x, layer_format)`` is its numpy model (see ``activations``).

onnxruntime note: its CPU provider fuses blocked int4/int8 DequantizeLinear + MatMul into
MatMulNBits, which by default quantises activations to int8 as well; sessions made with
``onnx_io.exact_session_options()`` compute with exactly the dequantised weights.
"""
from models.quantize.activations import ActivationRule, quantize_activations
from models.quantize.calibration import BUILTIN, Calibration, load_calibration
from models.quantize.formats import Format, parse_format
from models.quantize.quantizer import AUTO, DEFAULT_BUDGET, quantize_model
from models.quantize.report import LayerReport, QuantizeReport, QuantizeResult

__all__ = [
    "AUTO", "ActivationRule", "BUILTIN", "DEFAULT_BUDGET", "Calibration", "Format", "LayerReport", "QuantizeReport",
    "QuantizeResult", "load_calibration", "parse_format", "quantize_activations", "quantize_model",
]
