"""What one refusal costs the server, in CPU microseconds, by where it is refused (issue 22).

Under overload most calls are refused, and on a small machine the CPU they take
is the CPU the model does not get. Wall-clock times on 2 shared cores drift with
other people's work; CPU time per call drifts far less, so this measures that:
each case is a ``serve start`` process driven closed loop (benchmarks/loadgen.py,
its own process) for ``--duration`` seconds, and the table gives CPU seconds from
/proc divided by the calls answered: the server's, its event loop thread's (grpc.aio
and every line of our handler run there), and the generator's.

- ``served``: a null model that returns at once, no deadline: a whole served call;
- ``door``: a null model that sleeps 200 ms, each call with a 50 ms deadline:
  every call is refused by ``ModelScheduler.admit`` (RESOURCE_EXHAUSTED, before decode);
- ``limiter``: the same model without deadlines, ``--max-concurrent-rpcs 1``: one call
  sleeps and grpc.aio refuses the rest (RESOURCE_EXHAUSTED) before our handler runs.

    .venv/bin/python benchmarks/refusal_cost.py [--rounds 3 --duration 3]
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from admission import echo_model, generate, start_server  # noqa: E402
from serve.client import build_request  # noqa: E402
from serve.deploy import prepare  # noqa: E402
from serve.repository import ModelRepository  # noqa: E402

# case -> (model, its sleep in ms, each call's deadline in ms (0: none), serve start flags)
CASES = {
    "served": ("quick", 0, 0, ()),
    "door": ("slow", 200, 50, ()),
    "limiter": ("slow", 200, 0, ("--max-concurrent-rpcs", "1")),
}


def _us(seconds: tuple[float, ...]) -> str:
    """Median (range) in microseconds."""
    return f"{np.median(seconds) * 1e6:.0f} ({min(seconds) * 1e6:.0f}-{max(seconds) * 1e6:.0f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per case and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop callers")
    args = parser.parse_args(argv)

    inputs = {"x": np.random.default_rng(0).random((1, 16), dtype=np.float32)}
    rows: dict[str, list[tuple[float, float, float, int]]] = {case: [] for case in CASES}
    answers: dict[str, Counter] = {case: Counter() for case in CASES}
    with tempfile.TemporaryDirectory(prefix="bwserve-refusal-") as tmp:
        work = Path(tmp)
        onnx.save(echo_model(), work / "echo.onnx")
        repo = ModelRepository(work / "repo")
        for name, sleep_ms in {(m, s) for m, s, _, _ in CASES.values()}:
            prepared = prepare([work / "echo.onnx"], name=name, backend="null",
                               backend_options={"sleep_ms": str(sleep_ms)})
            repo.add(prepared.config.replace(warmup_runs=5), prepared.model_bytes)
        servers, requests = {}, {}
        try:
            for case, (model, _, _, flags) in CASES.items():
                servers[case] = start_server(work / "repo", [model], inputs, work / f"{case}.log", flags=flags)
                requests[case] = work / f"{case}.request"
                requests[case].write_bytes(build_request(model, inputs).SerializeToString())
            loadavg = [os.getloadavg()[0]]
            for r in range(args.rounds):
                order = list(CASES)[r % len(CASES):] + list(CASES)[:r % len(CASES)]
                for case in order:
                    server = servers[case]
                    out = generate(server.address, requests[case], 1, args.duration, concurrency=args.concurrency,
                                    timeout_ms=CASES[case][2], pid=server.process.pid)
                    calls = out["sent"]
                    answers[case].update(out["errors"])
                    answers[case]["OK"] += len(out["latencies_s"])
                    # the server's figures are cores over the ``duration`` window; the generator's, seconds
                    per_call = args.duration / calls
                    rows[case].append((out["server_cpu"] * per_call, out["loop_cpu"] * per_call,
                                       out["cpu_s"] / calls, calls))
                    loadavg.append(os.getloadavg()[0])
        finally:
            for server in servers.values():
                server.stop()

    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC  closed loop, "
          f"{args.concurrency} callers, {args.duration:g} s per case, {args.rounds} rounds (cases rotated), "
          f"{os.cpu_count()} cores, "
          f"load average {min(loadavg):.1f}-{max(loadavg):.1f}; medians of the rounds (range)\n")
    print("| case | calls/s | server us/call | loop us/call | client us/call | answers (most common) |")
    print("|---|---:|---:|---:|---:|---|")
    for case, values in rows.items():
        server, loop, client, calls = zip(*values)
        print(f"| {case} | {np.median(calls) / args.duration:.0f} | {_us(server)} | {_us(loop)} | {_us(client)} | "
              f"{'; '.join(f'{k} {v}' for k, v in answers[case].most_common(2))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
