"""The CPU backend: onnxruntime's CPU execution provider, set up for batch-1 latency.

Session options (benchmarks/cpu_session_options.py measures the choices end to end):
- intra-op threads: ``spec.threads`` if set, else the machine's cores divided
  among the model's instances, so that N instances do not oversubscribe the CPU;
- intra-op spinning: onnxruntime's default (on); backend option ``spinning=0``
  turns it off, ``spinning=run`` keeps it within a run only;
- a second, one-thread session for runs under load (``run_busy``: the scheduler
  uses it when other requests wait), when the first has more than one thread;
  option ``busy_threads`` sets its threads, ``busy_threads=0`` does without it.
  On 2 cores the default session's spinning pool thread takes a core from gRPC
  and the event loop under load and goodput collapses at 3x overload, while at
  concurrency 1 the same spinning is what makes it fast (benchmarks/README.md,
  "Overload on a fast model"). The cost: the model is in memory twice;
- no inter-op parallelism (sequential execution): at batch 1 the graph is a chain;
- full graph optimisation, done once at load;
- plain ``session.run``, no IO binding: binding the input and a pre-bound output
  buffer per run took 1.26x (MLP) and 1.81x (digits) as long at p50
  (benchmarks/cold_path.py), more Python calls for outputs of a few bytes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from backends.base import Backend, ModelLoadFailed


def default_threads(instances: int) -> int:
    """Intra-op threads per instance: the cores this process may use, shared out."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // instances)


class OnnxRuntimeBackend(Backend):
    """Shared by the CPU and GPU backends: one onnxruntime session per instance."""

    providers: tuple = ("CPUExecutionProvider",)
    inline_safe = True
    busy_session = None  # CpuBackend's second session, for runs under load

    def session_options(self, threads: int = 0):
        """Options of the session; ``threads`` overrides the intra-op threads (the busy session's)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads or self.spec.threads or default_threads(self.spec.instances)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # onnxruntime fuses blocked int4/int8 DequantizeLinear -> MatMul into MatMulNBits and,
        # at its default accuracy level, quantises the activations to int8 too (an output error
        # of ~1.5 measured on a small model); level 0 computes with the dequantised weights the
        # quantiser chose, as a narrow-precision model means.
        options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
        # Intra-op threads spin between ops by default; on a small machine they then take
        # cores from the gRPC threads. Option spinning=0 makes them sleep instead;
        # spinning=run lets them spin within a run and stop when it returns.
        spinning = self.spec.options.get("spinning", "1")
        if spinning not in ("0", "1", "run"):
            raise ModelLoadFailed(f"backend option spinning={spinning!r}: expected 0, 1 or run")
        options.add_session_config_entry("session.intra_op.allow_spinning", "0" if spinning == "0" else "1")
        if spinning == "run":
            options.add_session_config_entry("session.force_spinning_stop", "1")
        return options

    def busy_threads(self) -> int:
        """Intra-op threads of the session for runs under load; 0: none, ``run_busy`` is ``run``."""
        return 0

    def _session(self, model_path: Path, options):
        import onnxruntime as ort

        try:
            return ort.InferenceSession(str(model_path), sess_options=options, providers=list(self.providers))
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelLoadFailed(f"onnxruntime cannot load {model_path.name}: {exc}") from exc

    def load(self, model_path: Path) -> None:
        import onnxruntime as ort

        self.session = self._session(model_path, self.session_options())
        busy = self.busy_threads()
        self.busy_session = self._session(model_path, self.session_options(busy)) if busy else None
        self._output_names = [o.name for o in self.session.get_outputs()]
        self._run = self.session.run
        self._run_options = ort.RunOptions()  # one for every run: what ``cancel`` reaches

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._output_names, self._run(self._output_names, inputs, self._run_options)))

    def run_busy(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.busy_session is None:  # one session (and the GPU backend's own run)
            return self.run(inputs)
        return dict(zip(self._output_names, self.busy_session.run(self._output_names, inputs, self._run_options)))

    @property
    def busy_mode(self) -> bool:
        return self.busy_session is not None

    def cancel(self) -> None:
        # onnxruntime checks the flag between kernels and between a Loop's iterations.
        self._run_options.terminate = True

    def close(self) -> None:
        self.session = self.busy_session = None
        self._run = None


class CpuBackend(OnnxRuntimeBackend):
    device = "cpu"

    def busy_threads(self) -> int:
        value = self.spec.options.get("busy_threads", "1")
        if not value.isdigit():
            raise ModelLoadFailed(f"backend option busy_threads={value!r}: expected a count, 0 for none")
        threads = int(value)
        return threads if threads < self.session_options().intra_op_num_threads else 0
