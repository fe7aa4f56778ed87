"""The one exception type the converters raise."""
from __future__ import annotations


class ConversionError(Exception):
    """A source model could not be converted to ONNX.

    The message names the file (and layer or node, where there is one) and says what
    was expected, so that ``serve convert`` and ``serve deploy`` can print it as is.
    """
