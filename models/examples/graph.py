"""Write a stack of dense layers as an ONNX graph (MatMul + Add, ReLU between)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from models.convert.onnx_io import TARGET_OPSET, finalize


def dense_stack(name: str, weights: list[np.ndarray], biases: list[np.ndarray],
                input_name: str, output_name: str, softmax: bool = False) -> onnx.ModelProto:
    """``weights[i]`` has shape (in, out); the input is FP32 [1, in], the output FP32 [1, out]."""
    nodes, inits = [], []
    x = input_name
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases)):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"fc{i}.weight"),
                  numpy_helper.from_array(b.astype(np.float32), f"fc{i}.bias")]
        nodes += [helper.make_node("MatMul", [x, f"fc{i}.weight"], [f"fc{i}.mm"], name=f"fc{i}.matmul"),
                  helper.make_node("Add", [f"fc{i}.mm", f"fc{i}.bias"], [f"fc{i}.out"], name=f"fc{i}.add")]
        x = f"fc{i}.out"
        if i < last:
            nodes.append(helper.make_node("Relu", [x], [f"fc{i}.relu"], name=f"fc{i}.relu"))
            x = f"fc{i}.relu"
    nodes.append(helper.make_node("Softmax" if softmax else "Identity", [x], [output_name], name="output"))
    graph = helper.make_graph(
        nodes, name, inputs=[helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, weights[0].shape[0]])],
        outputs=[helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [1, weights[-1].shape[1]])],
        initializer=inits)
    model = helper.make_model(graph, producer_name="bwserve", opset_imports=[helper.make_opsetid("", TARGET_OPSET)])
    onnx.checker.check_model(model)
    return finalize(model)
