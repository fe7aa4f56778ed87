"""The one table from ONNX op type to its lowering function."""
from __future__ import annotations

from backends.fpga import lower_matrix, lower_vector

LOWERINGS = {**lower_matrix.LOWERINGS, **lower_vector.LOWERINGS}

try:  # recurrent cells are lowered onto the same instructions
    from backends.fpga import lower_rnn

    LOWERINGS.update(lower_rnn.LOWERINGS)
except ImportError:
    pass
