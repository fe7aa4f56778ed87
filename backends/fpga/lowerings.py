"""The one table from ONNX op type to its lowering function."""
from __future__ import annotations

from backends.fpga import lower_matrix, lower_rnn, lower_vector

LOWERINGS = {**lower_matrix.LOWERINGS, **lower_vector.LOWERINGS, **lower_rnn.LOWERINGS}
