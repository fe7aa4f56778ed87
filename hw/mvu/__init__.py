"""The matrix-vector unit (MVU): Brainwave's batch-1 matrix engine, beside the systolic array.

* :mod:`hw.mvu.golden`  -- the numpy golden model of one matrix-vector product (the specification)
* :mod:`hw.mvu.layout`  -- how a matrix is laid out in the tile engines' weight memories
* :mod:`hw.mvu.cycles`  -- the cycle model (formulas the RTL's counters must equal)

The unit's parameters are :class:`hw.config.MvuConfig`; its arithmetic is the systolic
array's (``hw.golden``'s ``align``, ``sat_add`` and ``acc_exp_rule``). See ``hw/README.md``.
"""
