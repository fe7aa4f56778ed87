"""Executes a compiled program: the prologue once, the body per request.

Each body instruction is bound at load to a small closure over its operands, so a
request is one pass over a list of calls with no dispatch or lookups beyond the
register dictionary. Host partitions run in onnxruntime sessions made at load.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from hw.config import HwConfig, MvuConfig
from hw.mvu.golden import acc_exp_of_slices, slice_stats

from backends.fpga import isa, kernels, matunit
from backends.fpga.operands import encode_any_weights, encode_rows, encode_vectors
from backends.fpga.options import layer_format

Regs = dict
# systolic: (cfg, WeightTiles, x_mant, x_exp) -> tile values (G, nk, nn, T, cols);
# MVU: (cfg, MvuWeights, x_mant, x_exp) -> product values (G, T, N)
Engine = Callable

_UNARY = {
    "relu": lambda x: np.maximum(x, np.float32(0)),
    "sigmoid": lambda x: (np.float32(1) / (np.float32(1) + np.exp(-x))).astype(np.float32),
    "tanh": np.tanh,
    "neg": np.negative,
    "identity": lambda x: x,
    "rsqrt": lambda x: (np.float32(1) / np.sqrt(x)).astype(np.float32),
}
_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply}


def _host_session(model):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


class Runtime:
    """One loaded program on one engine (golden, tile or rtl)."""

    def __init__(self, program: isa.Program, cfg: HwConfig | MvuConfig, engine: Engine):
        self.cfg, self.program, self.engine = cfg, program, engine
        self.weights: dict[str, isa.WeightTiles | isa.MvuWeights] = {}
        self.consts: Regs = {}
        for ins in program.prologue:
            if isinstance(ins, isa.PinWeights):
                self.weights[ins.slot] = ins.tiles
            else:
                self.consts[ins.dst] = ins.value
        self.sessions = [_host_session(m) for m in program.host_parts]
        self.steps = [self._bind(ins) for ins in program.body]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        regs = dict(self.consts)
        regs["__inputs__"] = inputs
        with np.errstate(over="ignore"):  # sigmoid's exp(-x) may overflow to inf: exact 0
            for step in self.steps:
                step(regs)
        return {name: regs[f"__out__{name}"] for name in self.program.outputs}

    # -- binding -------------------------------------------------------------------------
    def _bind(self, ins) -> Callable[[Regs], None]:
        return getattr(self, f"_bind_{type(ins).__name__.lower()}")(ins)

    def _bind_recv(self, ins: isa.Recv):
        dst, name, shape = ins.dst, ins.name, ins.shape

        def step(r):
            x = np.asarray(r["__inputs__"][name])
            r[dst] = x.astype(np.float32).reshape(shape) if x.dtype.kind == "f" else x
        return step

    def _bind_send(self, ins: isa.Send):
        src, key = ins.src, f"__out__{ins.name}"

        def step(r):
            r[key] = r[src]
        return step

    def _bind_matmul(self, ins: isa.MatMul):
        cfg, engine, fmt = self.cfg, self.engine, layer_format(ins.fmt)
        g, t, k, n, out_shape = ins.groups, ins.t, ins.k, ins.n, ins.out_shape
        src, dst, wsrc = ins.src, ins.dst, ins.wsrc
        pinned = self.weights.get(ins.slot)
        src_b, w_b = ins.src_bcast, ins.w_bcast
        acc = ins.acc
        if isinstance(cfg, MvuConfig):  # blocks along K of whole input words; one value per product
            encode_x = encode_rows
            finish = lambda values: values.astype(np.float32)  # noqa: E731
        else:  # K-tiles of the array's operands; their values summed in the accumulation buffer
            encode_x = encode_vectors
            finish = lambda values: matunit.reduce_tiles(values, n)  # noqa: E731

        def step(r):
            x = r[src] if src_b is None else np.broadcast_to(r[src].reshape(src_b[0]), src_b[1])
            if pinned is None:
                wr = r[wsrc] if w_b is None else np.broadcast_to(r[wsrc].reshape(w_b[0]), w_b[1])
                w = encode_any_weights(cfg, fmt, wr.reshape(g, k, n))
            else:
                w = pinned
            xm, xe = encode_x(cfg, fmt, x.reshape(g, t, k))
            if acc:  # a row slice: the whole product's exponent, from every slice's statistics
                values = engine(cfg, w, xm, xe, acc_exp_of_slices(cfg, [r[s] for s in acc]))
            else:
                values = engine(cfg, w, xm, xe)
            r[dst] = finish(values).reshape(out_shape)
        return step

    def _bind_accstats(self, ins: isa.AccStats):
        cfg, fmt, w = self.cfg, layer_format(ins.fmt), self.weights[ins.slot]
        dst, src, t, k = ins.dst, ins.src, ins.t, ins.k

        def step(r):
            xm, xe = encode_rows(cfg, fmt, r[src].reshape(t, k))
            r[dst] = slice_stats(cfg, w.blas_operands[0], w.exp[0], xm, xe)
        return step

    def _bind_im2col(self, ins: isa.Im2Col):
        dst, src, geom = ins.dst, ins.src, ins.geom

        def step(r):
            r[dst] = kernels.im2col(r[src], geom)
        return step

    def _bind_unary(self, ins: isa.Unary):
        dst, src, fn = ins.dst, ins.src, _UNARY[ins.kind]

        def step(r):
            r[dst] = fn(r[src])
        return step

    def _bind_binary(self, ins: isa.Binary):
        dst, a, b, fn = ins.dst, ins.a, ins.b, _BINARY[ins.kind]

        def step(r):
            r[dst] = fn(r[a], r[b], dtype=np.float32)
        return step

    def _bind_softmax(self, ins: isa.Softmax):
        dst, src, axis, shape, pre = ins.dst, ins.src, ins.axis, ins.shape, ins.pre

        def step(r):
            x = r[src] if pre is None else r[src].reshape(pre)
            e = np.exp(x - x.max(axis=axis, keepdims=True))
            r[dst] = (e / e.sum(axis=axis, keepdims=True)).astype(np.float32).reshape(shape)
        return step

    def _bind_pool(self, ins: isa.Pool):
        dst, src, kind, geom = ins.dst, ins.src, ins.kind, ins.geom

        def step(r):
            r[dst] = kernels.pool(kind, r[src], geom)
        return step

    def _bind_move(self, ins: isa.Move):
        dst, src, shape, perm, pre = ins.dst, ins.src, ins.shape, ins.perm, ins.pre

        def step(r):
            x = r[src]
            if perm is not None:
                x = np.ascontiguousarray((x.reshape(pre) if pre else x).transpose(perm))
            r[dst] = x.reshape(shape)
        return step

    def _bind_slice(self, ins: isa.Slice):
        dst, src = ins.dst, ins.src
        index = (slice(None),) * ins.axis + (slice(ins.start, ins.stop),)

        def step(r):
            r[dst] = r[src][index]
        return step

    def _bind_concat(self, ins: isa.Concat):
        dst, srcs, axis = ins.dst, ins.srcs, ins.axis

        def step(r):
            r[dst] = np.concatenate([r[s] for s in srcs], axis=axis)
        return step

    def _bind_hostcall(self, ins: isa.HostCall):
        session = self.sessions[ins.part]
        names = [i.name for i in session.get_inputs()]
        srcs, dsts = ins.srcs, ins.dsts
        by_name = dict(zip(srcs, srcs))

        def step(r):
            feeds = {n: r[by_name[n]] for n in names}
            for d, v in zip(dsts, session.run(list(dsts), feeds)):
                r[d] = v
        return step
