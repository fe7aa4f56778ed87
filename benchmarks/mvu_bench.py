"""The matrix-vector unit against the systolic array and the host CPU, batch 1 (issue 17).

    .venv/bin/python benchmarks/mvu_bench.py [--requests 50] [--hidden 256,512,1024,1536] > table.md

Models: MLP 784-512-512-10 (models/examples/mlp.py), the CNTK MNIST CNN (../shared), and
ONNX LSTM and GRU (input = hidden, 25 steps, batch 1, GRU with linear_before_reset as
cuDNN and DeepBench run it) at each ``--hidden``, GRU also at 2816 (DeepBench's largest),
every model in msfp16. Engines: (a) the 16x16 systolic array (256 MACs, 8 MiB), (b) the
small MVU (2x8x16: 256 MACs, 8 MiB; the config the RTL serves), (c) the Brainwave-scale
MVU (6x400x40: 96,000 MACs, a Stratix 10 GX 2800's 30 MB of M20K). Device figures come
from the cycle model (its matrix instructions equal the RTL's counters,
tests/fpga/test_rtl.py): cycles, modeled latency at 250 MHz, and MAC utilisation while
the device computes (and over the whole request, host-link transfers included). The
host's own latency is onnxruntime's CPU session (default threads) on the same model in
fp32, ``--requests`` runs after warm-up, measured in this run: p50, p99 and p99.9, and
its p50 over each engine's modeled latency.

``--rtl`` then runs one request of every model the small MVU takes with the Verilated
unit in the loop (``fpga_sim=rtl``) and prints a second table: the RTL's cycle counters
against the cycle model, its outputs against the golden engine's, and the host's wall
time for that request.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from backends.base import ModelLoadFailed, ModelSpec  # noqa: E402
from backends.fpga import FpgaBackend  # noqa: E402
from fpga_bench import CNTK, SEQ, rnn  # noqa: E402
from serve.deploy import prepare  # noqa: E402

ENGINES = {"systolic 16x16": {"engine": "systolic", "array": "16x16"},
           "MVU small 2x8x16": {"engine": "mvu", "mvu": "small"},
           "MVU brainwave 6x400x40": {"engine": "mvu", "mvu": "brainwave"}}


def models(hidden: list[int]):
    from models.examples import mlp

    for name, source in (("MLP 784-512-512-10", mlp.build()), ("MNIST CNN (cntk)", CNTK)):
        if not isinstance(source, onnx.ModelProto) and not source.exists():
            print(f"<!-- {name}: {source} not present, skipped -->")
            continue
        if isinstance(source, onnx.ModelProto):
            path = Path("/tmp/bwserve_mvu_bench_mlp.onnx")
            onnx.save(source, path)
            source = path
        prepared = prepare([source], backend="fpga", precision="msfp16", trial_load=False)
        feeds = {t.name: np.random.default_rng(0).uniform(0, 1, t.shape).astype(np.float32)
                 for t in prepared.config.inputs}
        yield name, onnx.load_from_string(prepared.model_bytes), dict(prepared.config.layer_formats), feeds
    for op, sizes in (("LSTM", hidden), ("GRU", hidden + [2816])):
        for h in sizes:
            model, formats = rnn(op, h)
            x = np.random.default_rng(1).standard_normal((SEQ, 1, h)).astype(np.float32)
            yield f"{op} h{h} x {SEQ} steps", model, formats, {"x": x}


def cpu_latency(model: onnx.ModelProto, feeds: dict, n: int) -> np.ndarray:
    """Seconds per batch-1 onnxruntime CPU run, ``n`` runs after warm-up."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for _ in range(3):
        session.run(None, feeds)
    times = np.empty(n)
    for i in range(n):
        t = time.perf_counter()
        session.run(None, feeds)
        times[i] = time.perf_counter() - t
    return times


def device(model, formats, options) -> FpgaBackend | str:
    """The model loaded on one engine, or why the engine refused it, in short."""
    backend = FpgaBackend(ModelSpec(name="bench", layer_formats=formats, options=options))
    try:
        backend.load_model(model)
    except ModelLoadFailed as exc:
        sizes = re.search(r"need (\d+) bytes .* (?:has|(\d+) devices of) (\d+) bytes", str(exc))
        if sizes:
            per = f"{sizes[2]} x " if sizes[2] else ""
            return f"weights need {int(sizes[1]) / 1e6:.1f} MB, {per}{int(sizes[3]) / 1e6:.1f} MB on chip"
        return re.sub(r"^\w+: ", "", str(exc))
    return backend


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=50, help="onnxruntime CPU runs per model")
    ap.add_argument("--hidden", default="256,512,1024,1536", help="LSTM/GRU hidden sizes")
    ap.add_argument("--rtl", action="store_true", help="also run the small MVU's RTL on every model it takes")
    args = ap.parse_args()
    hidden = [int(h) for h in args.hidden.split(",")]
    print("| model | host CPU p50 / p99 / p99.9 (us) | engine | cycles | modeled latency (us) | "
          "MAC utilisation (computing / whole request) | CPU p50 / modeled |")
    print("|---|---|---|---|---|---|---|")
    small = []  # what the small MVU takes, for --rtl
    for name, model, formats, feeds in models(hidden):
        cpu = 1e6 * cpu_latency(model, feeds, args.requests)
        p50, p99, p999 = np.percentile(cpu, [50, 99, 99.9])
        host = f"{p50:.0f} / {p99:.0f} / {p999:.0f}"
        for engine, options in ENGINES.items():
            backend = device(model, formats, options)
            if isinstance(backend, str):
                print(f"| {name} | {host} | {engine} | refused: {backend} | | | |", flush=True)
                continue
            if engine.startswith("MVU small"):
                small.append((name, model, formats, feeds, backend))
            cost, cfg = backend.cost, backend.cfg
            modeled = 1e6 * cost.seconds(cfg)
            print(f"| {name} | {host} | {engine} | {cost.cycles} | {modeled:.1f} | "
                  f"{100 * cost.utilisation(cfg):.1f}% / {100 * cost.end_to_end_utilisation(cfg):.1f}% | "
                  f"{p50 / modeled:.1f}x |", flush=True)
    if args.rtl:
        rtl_table(small)


def rtl_table(small: list) -> None:
    """One request of each model on the small MVU's RTL: counters, outputs, wall time."""
    print("\n| model (MVU small, RTL) | RTL counters | cycle model | outputs equal golden | host wall (ms) |")
    print("|---|---|---|---|---|")
    for name, model, formats, feeds, golden in small:
        rtl = device(model, formats, {**ENGINES["MVU small 2x8x16"], "fpga_sim": "rtl"})
        t = time.perf_counter()
        out = rtl.run(feeds)
        wall = time.perf_counter() - t
        same = all(np.array_equal(out[k], v) for k, v in golden.run(feeds).items())
        print(f"| {name} | {rtl.engine.matrix_cycles} | {golden.cost.matmul_cycles} | {same} | {1e3 * wall:.1f} |",
              flush=True)
        rtl.close()


if __name__ == "__main__":
    main()
