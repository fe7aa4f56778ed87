"""An FPGA model's load with and without its compiled artefact (issue 20, item 4).

    .venv/bin/python benchmarks/load_bench.py [--rounds 5] [--hidden 1024]

Each model is written as a repository version (model.onnx in a folder); each round
times ``FpgaBackend.load`` twice, in alternating order: once with no artefact there
(the compile: lowering, weight encoding, pinning, the cycle model's schedule), once
with the artefact the compile wrote (``backends.fpga.artifact``: read, check, bind).
Both are whole loads, the runtime's binding and onnxruntime's host sessions included,
timed twice: in this process (a load after others: warm caches) and in a fresh one (a
server start: the process's first load, after the imports). Printed: p50 and p99 of each
over the rounds, their ratio (p50 compile / p50 artefact), the artefact's size, and
whether both loads' outputs are bit for bit the same.

Models: the CNTK MNIST CNN from ../shared (msfp16, engine auto: both engines compiled,
as deploy does by default), and an ONNX GRU (``--hidden``, 25 steps, msfp16) on the
Brainwave-scale MVU over as many devices as hold it (``devices=auto``: h2816 takes two).
A fresh process's load whose key is not the artefact's (someone edited the compiler's
source during the run) is dropped and counted.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from backends.base import ModelSpec  # noqa: E402
from backends.fpga import FpgaBackend, artifact  # noqa: E402
from fpga_bench import CNTK, SEQ, rnn  # noqa: E402
from serve.deploy import prepare  # noqa: E402
from serve.repository import write_files  # noqa: E402


def models(hidden: int):
    if CNTK.exists():
        prepared = prepare([CNTK], backend="fpga", precision="msfp16", trial_load=False)
        feeds = {t.name: np.random.default_rng(0).uniform(0, 1, t.shape).astype(np.float32)
                 for t in prepared.config.inputs}
        yield "MNIST CNN (cntk), engine auto", prepared.model_bytes, dict(prepared.config.layer_formats), {}, feeds
    else:
        print(f"<!-- MNIST CNN: {CNTK} not present, skipped -->")
    model, formats = rnn("GRU", hidden)
    x = np.random.default_rng(1).standard_normal((SEQ, 1, hidden)).astype(np.float32)
    yield (f"GRU h{hidden} x {SEQ} steps, MVU brainwave, devices=auto", model.SerializeToString(), formats,
           {"engine": "mvu", "mvu": "brainwave", "devices": "auto"}, {"x": x})


def timed_load(folder: Path, spec: ModelSpec) -> tuple[float, FpgaBackend]:
    backend = FpgaBackend(spec)
    t0 = time.perf_counter()
    backend.load(folder / "model.onnx")
    return time.perf_counter() - t0, backend


def fresh_load(folder: Path, spec: ModelSpec) -> tuple[float, str]:
    """``timed_load`` in a new process (its first load, as at a server start): seconds, key."""
    arg = json.dumps({"folder": str(folder), "name": spec.name, "formats": dict(spec.layer_formats),
                      "options": dict(spec.options)})
    out = subprocess.run([sys.executable, __file__, "--child", arg], capture_output=True, text=True, check=True)
    seconds, key = out.stdout.split()[-2:]
    return float(seconds), key


def _child(arg: str) -> None:
    a = json.loads(arg)
    seconds, backend = timed_load(Path(a["folder"]), ModelSpec(name=a["name"], layer_formats=a["formats"],
                                                               options=a["options"]))
    print(seconds, backend.artifact_key)


def _cell(times: list[float], digits: int) -> str:
    return f"{np.percentile(times, 50):.{digits}f} / {np.percentile(times, 99):.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return _child(args.child)
    print("| model | process | load, compiling: p50 / p99 (s) | load, artefact: p50 / p99 (s) | ratio (p50) | "
          "artefact | outputs |")
    print("|---|---|---|---|---|---|---|")
    for name, model_bytes, formats, options, feeds in models(args.hidden):
        spec = ModelSpec(name=name, layer_formats=formats, options=options)
        folder = Path(tempfile.mkdtemp(prefix="bwserve-load-bench-"))
        (folder / "model.onnx").write_bytes(model_bytes)
        _, first = timed_load(folder, spec)  # a compile: the reference outputs, and the artefact's bytes
        saved = first.compiled_files()
        reference = first.run(feeds)
        first.close()
        times = {(fresh, art): [] for fresh in (False, True) for art in (False, True)}
        same, stale = True, 0
        for r in range(args.rounds):
            for with_artefact in ((False, True) if r % 2 == 0 else (True, False)):
                shutil.rmtree(folder / artifact.FOLDER, ignore_errors=True)
                if with_artefact:
                    write_files(folder, saved)
                seconds, backend = timed_load(folder, spec)
                times[(False, with_artefact)].append(seconds)
                out = backend.run(feeds)
                same &= out.keys() == reference.keys() and all(np.array_equal(out[k], reference[k]) for k in out)
                backend.close()
                seconds, key = fresh_load(folder, spec)
                if key == first.artifact_key:
                    times[(True, with_artefact)].append(seconds)
                else:  # the compiler's source changed under this run (a shared tree): another key
                    stale += 1
        shutil.rmtree(folder)
        size = sum(len(data) for data in saved.values())
        if stale:
            print(f"<!-- {name}: {stale} fresh-process loads dropped: the compiler's source changed mid-run -->")
        for fresh in (False, True):
            cold, warm = times[(fresh, False)], times[(fresh, True)]
            if not cold or not warm:
                continue
            print(f"| {name} | {'fresh' if fresh else 'this one'} | {_cell(cold, 3)} | {_cell(warm, 4)} | "
                  f"{np.percentile(cold, 50) / np.percentile(warm, 50):.1f}x | {size / 1e3:,.0f} kB | "
                  f"{'bit for bit' if same else 'DIFFER'} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
