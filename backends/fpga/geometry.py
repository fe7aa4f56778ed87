"""Window arithmetic shared by convolution and pooling (ONNX's rules, pads resolved)."""
from __future__ import annotations

import math


def windows(spatial, kernel, strides, dilations, pads, auto_pad: str = "NOTSET", ceil_mode: bool = False):
    """Resolve ONNX window attributes: ``(pads, out_spatial, real_ends)``.

    ``pads`` comes back as begins then ends, with ceil_mode's extra end padding
    included; ``real_ends`` are the end pads the attributes themselves ask for.
    """
    nd = len(spatial)
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [math.ceil(s / st) for s, st in zip(spatial, strides)]
        total = [max(0, (o - 1) * st + sp - s) for o, st, sp, s in zip(out, strides, span, spatial)]
        small = [t // 2 for t in total]
        begins = small if auto_pad == "SAME_UPPER" else [t - h for t, h in zip(total, small)]
        ends = [t - b for t, b in zip(total, begins)]
        return tuple(begins) + tuple(ends), tuple(out), tuple(ends)
    pads = list(pads) if pads and auto_pad != "VALID" else [0] * (2 * nd)
    begins, ends = pads[:nd], pads[nd:]
    out = []
    for s, st, sp, b, e in zip(spatial, strides, span, begins, ends):
        room = s + b + e - sp
        o = (math.ceil(room / st) if ceil_mode else room // st) + 1
        if ceil_mode and (o - 1) * st >= s + b:  # the last window would start in the end padding
            o -= 1
        out.append(o)
    extra = [max(0, (o - 1) * st + sp - (s + b + e)) for o, st, sp, s, b, e in
             zip(out, strides, span, spatial, begins, ends)]
    return tuple(begins) + tuple(e + x for e, x in zip(ends, extra)), tuple(out), tuple(ends)
