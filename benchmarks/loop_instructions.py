"""Instructions per request on each server's event-loop thread, counted by callgrind.

At concurrency 1 the servers differ by a few percent, and latency on this shared
machine drifts by more than that (paired_c1.py narrows it down, slowly). The
instructions a thread executes do not drift. Each server runs under valgrind's
callgrind; the client sends warm-up requests, zeroes the counters, sends
``--requests`` at concurrency 1 and dumps them; the server's main thread, where
grpc.aio, the handler and (at batch 1) the model run, is divided by the request
count. Background work (bwserve polls its models' health 4 times a second)
weighs about 50 times more under callgrind than at full speed, so the same
thread's count over an equally long idle spell is measured and subtracted.

Both servers get one intra-op thread: a spinning onnxruntime pool thread would
hold valgrind's single lock (it runs one thread at a time). bwserve's inline
threshold is lifted: its runs, about 50 times slower here, would otherwise go
to a worker thread, which at full speed they do not.

    .venv/bin/python benchmarks/loop_instructions.py [--requests 300] [--models mlp]   # ~2 min a server
"""
from __future__ import annotations

import argparse
import glob
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from baselines import launch
from serve.bench import run_load
from serve.client import build_request
from serve.deploy import prepare
from serve.repository import ModelRepository
from serving import MNIST, deploy_models, model_path, random_inputs

# bwserve as `serve start` runs it, with the inline threshold lifted (module docstring).
BWSERVE = "import sys, serve.scheduler as s; s.INLINE_MAX_S = 100.0; from serve.cli import main; sys.exit(main())"
SERVERS = {
    "obvious": lambda repo, model, port: launch.obvious(model_path(repo, model), model, port) + ["--threads", "1"],
    "bwserve, asyncio loop": lambda repo, model, port: [
        sys.executable, "-c", BWSERVE, *launch.bwserve(repo.root, model, port)[1:], "--event-loop", "asyncio"],
    "bwserve, uvloop": lambda repo, model, port: [
        sys.executable, "-c", BWSERVE, *launch.bwserve(repo.root, model, port)[1:], "--event-loop", "uvloop"],
}


def main_thread_count(prefix: str, pid: int, dump: int) -> int:
    """Instructions of the process's main thread in callgrind dump number ``dump``."""
    (path,) = glob.glob(f"{prefix}.{pid}.{dump}-01")
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise ValueError(f"no totals in {path}")


def measure(name: str, command: list[str], port: int, request, requests: int, work: Path) -> float:
    """Main-thread instructions per request, idle background subtracted."""
    prefix = str(work / name.replace(" ", "").replace(",", "-"))
    valgrind = ["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={prefix}.%p"]
    server = launch.start(name, valgrind + command, port, request, Path(f"{prefix}.log"), timeout=900,
                          attempt_timeout=120)
    control = lambda flag: subprocess.run(["callgrind_control", flag, str(server.process.pid)],  # noqa: E731
                                          check=True, capture_output=True)
    address = server.address
    try:
        run_load(address, request, concurrency=1, requests=100, warmup=0, timeout=120)
        control("-z")
        started = time.perf_counter()
        result = run_load(address, request, concurrency=1, requests=requests, warmup=0, timeout=120)
        busy_s = time.perf_counter() - started
        control("-d")  # dump 1: the requests
        time.sleep(busy_s)
        control("-d")  # dump 2: as long idle
        if len(result.latencies_s) != requests:
            raise RuntimeError(f"{name}: {requests - len(result.latencies_s)} requests failed: {result.errors}")
        time.sleep(1)  # the dump files are written after the control call returns
        busy = main_thread_count(prefix, server.process.pid, 1)
        idle = main_thread_count(prefix, server.process.pid, 2)
        return (busy - idle) / requests
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="counted requests per server")
    parser.add_argument("--models", nargs="+", default=["mlp"], choices=["mlp", "mnist"])
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("needs valgrind (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="bwserve-instr-") as tmp:
        work = Path(tmp)
        repo = ModelRepository(work / "repo")
        configs = deploy_models(repo, work)
        for model in args.models:  # one intra-op thread (module docstring)
            prepared = prepare([MNIST if model == "mnist" else work / "mlp.onnx"], name=model, threads=1)
            repo.add(prepared.config, prepared.model_bytes)
        rows = []
        for model in args.models:
            request = build_request(model, random_inputs(configs[model]))
            counts = {}
            for name, command in SERVERS.items():
                port = launch.free_port()
                counts[name] = measure(name, command(repo, model, port), port, request, args.requests, work)
                print(f"{model}, {name}: {counts[name] / 1e3:.0f} k instructions per request", flush=True)
            base = counts["obvious"]
            rows += [f"| {model} | {name} | {n / 1e3:.0f} | {n / base:.3f} |" for name, n in counts.items()]
    print("\n| model | server | main-thread instructions per request (k) | / obvious |\n|---|---|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
