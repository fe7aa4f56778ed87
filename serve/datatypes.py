"""KServe v2 datatype names <-> numpy dtypes <-> ONNX element types."""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

# v2 name -> numpy dtype, little-endian as the protocol's raw contents are.
NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}

FROM_NUMPY: dict[np.dtype, str] = {dt: name for name, dt in NUMPY.items()}
FROM_NUMPY[np.dtype(np.str_)] = "BYTES"
FROM_NUMPY[np.dtype(np.bytes_)] = "BYTES"

FROM_ONNX: dict[int, str] = {
    TensorProto.BOOL: "BOOL",
    TensorProto.UINT8: "UINT8",
    TensorProto.UINT16: "UINT16",
    TensorProto.UINT32: "UINT32",
    TensorProto.UINT64: "UINT64",
    TensorProto.INT8: "INT8",
    TensorProto.INT16: "INT16",
    TensorProto.INT32: "INT32",
    TensorProto.INT64: "INT64",
    TensorProto.FLOAT16: "FP16",
    TensorProto.FLOAT: "FP32",
    TensorProto.DOUBLE: "FP64",
    TensorProto.STRING: "BYTES",
}

# Which InferTensorContents field carries each datatype when raw contents are not used.
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

# Triton ModelConfig DataType enum names.
TRITON_ENUM: dict[str, str] = {name: f"TYPE_{name}" for name in NUMPY if name != "BYTES"}
TRITON_ENUM["BYTES"] = "TYPE_STRING"
