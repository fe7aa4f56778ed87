"""The SystemVerilog parameter defaults equal hw.config's figures.

Every build overrides the top module's parameters with ``-G`` from its config, so the
defaults written in ``hw/rtl`` and ``hw/mvu/rtl`` only matter to a bare elaboration
(lint, a trace by hand); this test keeps them from drifting away from the config
(issue 20: the numbers are written in Verilog too, and checked here, rather than
generated). A parameter this table does not know fails the test, so a new one gets
its figure here.
"""
import re
from pathlib import Path

import pytest

from hw import cycles
from hw.build import MVU_RTL_DIR, RTL_DIR
from hw.config import DEFAULT, MVU_PRESETS


def _clog2(n: int) -> int:
    """SystemVerilog's $clog2: the bits that index n entries."""
    return (n - 1).bit_length()


_ARRAY = DEFAULT.verilog_params()
_MVU = MVU_PRESETS["tiny"].verilog_params()  # mvu.sv's header says why the tiny preset
EXPECTED = {
    "bfp_tile": _ARRAY,
    "bfp_tile_pv": _ARRAY,
    "bfp_ctrl": {"ROWS": DEFAULT.rows, "EXPW": DEFAULT.exp_bits, "LATENCY": cycles.pipeline_latency(DEFAULT)},
    "mvu": _MVU,
    "mvu_seq": {"DA": _clog2(max(_MVU["DEPTH"], 2)), "DN": _clog2(_MVU["DEPTH"] + 1)},
    # A delay line of any width and depth: its defaults are no hardware figure.
    "bfp_delay": {"W": 1, "D": 1, "RESET": 0},
}

_MODULE = re.compile(r"^\s*module\s+(\w+)\s*#\s*\((.*?)^\s*\)\s*\(", re.S | re.M)
_PARAM = re.compile(r"\bparameter\s+(?:int|bit)\s+(\w+)\s*=\s*([0-9]+'[bdh][0-9a-fA-F]+|[0-9]+)")


def _value(text: str) -> int:
    if "'" in text:
        size, literal = text.split("'")
        return int(literal[1:], {"b": 2, "d": 10, "h": 16}[literal[0]])
    return int(text)


def _defaults() -> dict[str, dict[str, int]]:
    """Each module's parameter defaults (localparams are derived, not defaults), by module."""
    found = {}
    for path in sorted([*RTL_DIR.glob("*.sv"), *MVU_RTL_DIR.glob("*.sv")]):
        for module, header in _MODULE.findall(path.read_text()):
            found[module] = {name: _value(v) for name, v in _PARAM.findall(re.sub(r"//[^\n]*", "", header))}
    return found


def test_every_parameterised_module_is_checked():
    assert set(_defaults()) == set(EXPECTED)


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_sv_parameter_defaults_equal_the_config(module):
    assert _defaults()[module] == EXPECTED[module]


def test_every_verilog_param_of_the_config_is_a_top_module_parameter():
    """A ``-G`` override of a name the top module lacks would be ignored with a warning."""
    found = _defaults()
    assert set(_ARRAY) == set(found["bfp_tile"])
    assert set(_MVU) == set(found["mvu"])
