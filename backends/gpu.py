"""The GPU backend: onnxruntime's CUDA (and TensorRT) execution providers at batch 1.

What it does for batch-1 latency:
- IO binding: each input is copied to the device once; outputs go to device
  buffers allocated once at load (static shapes) and come back with one copy.
- CUDA graphs (option ``cuda_graph``, on by default where every shape is static):
  the whole model replays as one graph launch; inputs are copied into the
  fixed device buffers the graph was captured with.
- fp16: ``precision="fp16"`` converts the model's float weights and compute with
  onnxruntime's own converter (``onnxruntime.transformers.float16``), keeping
  FP32 inputs and outputs so clients see the same signature.
- TensorRT: used when its libraries are present (option ``tensorrt``: auto/1/0),
  with its engine cache beside the model in the repository.

Without a usable GPU, ``load`` raises ``BackendUnavailable`` saying what is
missing; it never runs on the CPU instead.
"""
from __future__ import annotations

import ctypes.util
from pathlib import Path
from typing import Mapping

import numpy as np

from backends.base import BackendUnavailable, ModelLoadFailed
from backends.cpu import OnnxRuntimeBackend

CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
# The [gpu] extra replaces the [cpu] one (the two packages overwrite each other's files),
# and pip never removes what an extra no longer asks for: the CPU package goes first.
GPU_EXTRA_HINT = ("install the [gpu] extra in place of the CPU onnxruntime: "
                  "pip uninstall -y onnxruntime && pip install 'bwserve[gpu]'")


def _flag(options: Mapping[str, str], key: str, default: str) -> str:
    value = options.get(key, default).lower()
    if value not in ("auto", "1", "0"):
        raise ValueError(f"backend option {key}={value!r}: expected auto, 1 or 0")
    return value


def tensorrt_libraries_present() -> bool:
    return ctypes.util.find_library("nvinfer") is not None


def select_providers(available: list[str], options: Mapping[str, str], precision: str,
                     cache_dir: Path, trt_present: bool, device_id: int = 0) -> list:
    """The provider list for a session, or BackendUnavailable saying why there is none."""
    if CUDA not in available:
        raise BackendUnavailable(
            f"the gpu backend needs onnxruntime's {CUDA}, and this onnxruntime offers only "
            f"{', '.join(available)}; {GPU_EXTRA_HINT}")
    cuda_graph = _flag(options, "cuda_graph", "auto") != "0"
    cuda = (CUDA, {"device_id": str(device_id), "enable_cuda_graph": "1" if cuda_graph else "0",
                   "cudnn_conv_algo_search": "EXHAUSTIVE"})
    trt = _flag(options, "tensorrt", "auto")
    if trt == "1" and (TENSORRT not in available or not trt_present):
        raise BackendUnavailable("tensorrt=1 but TensorRT is not available (needs onnxruntime's "
                                 f"{TENSORRT} and libnvinfer on the library path)")
    if trt != "0" and TENSORRT in available and trt_present:
        return [(TENSORRT, {"device_id": str(device_id), "trt_engine_cache_enable": "True",
                            "trt_engine_cache_path": str(cache_dir),
                            "trt_fp16_enable": "True" if precision == "fp16" else "False"}), cuda]
    return [cuda]


def _check_cuda_device() -> None:
    """A clear reason when the package is there but no GPU/driver/CUDA runtime is."""
    if ctypes.util.find_library("cuda") is None and not Path("/dev/nvidia0").exists():
        raise BackendUnavailable("no NVIDIA driver found (libcuda.so and /dev/nvidia0 are missing): "
                                 "the gpu backend needs an NVIDIA GPU with its driver installed")


class GpuBackend(OnnxRuntimeBackend):
    device = "gpu"

    def load(self, model_path: Path) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"onnxruntime is not installed; {GPU_EXTRA_HINT}") from exc
        if hasattr(ort, "preload_dlls"):  # CUDA/cuDNN wheels from PyPI (onnxruntime-gpu[cuda,cudnn])
            try:
                ort.preload_dlls()
            except Exception:  # noqa: BLE001 - a missing wheel surfaces at session creation
                pass
        options = dict(self.spec.options)
        self.providers = tuple(select_providers(
            ort.get_available_providers(), options, self.spec.precision,
            model_path.parent / "trt_cache", tensorrt_libraries_present()))
        _check_cuda_device()
        source = model_path
        if self.spec.precision == "fp16":
            source = self._to_fp16(model_path)
        try:
            super().load(source)
        except ModelLoadFailed:
            if dict(self.providers[-1][1]).get("enable_cuda_graph") != "1":
                raise
            # Not every model can be captured (dynamic shapes, CPU-placed nodes): without graphs.
            self.providers = tuple((name, {**opts, "enable_cuda_graph": "0"}) if name == CUDA else (name, opts)
                                   for name, opts in self.providers)
            super().load(source)
        active = self.session.get_providers()
        if CUDA not in active and TENSORRT not in active:
            raise BackendUnavailable(f"onnxruntime created the session on {active}, not the GPU: "
                                     "check the CUDA and cuDNN libraries (onnxruntime-gpu[cuda,cudnn])")
        self._bind(ort)

    def _to_fp16(self, model_path: Path) -> Path:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(model_path)), keep_io_types=True)
        path = model_path.parent / "model.fp16.onnx"
        onnx.save(model, str(path))
        return path

    def _bind(self, ort) -> None:
        session = self.session
        self._binding = session.io_binding()
        self._graph = dict(self.providers[-1][1]).get("enable_cuda_graph") == "1"
        self._inputs = {}
        for spec in self.spec.inputs:
            if self._graph:  # CUDA graphs replay on fixed addresses: one device buffer per input
                shape = [d if d > 0 else 1 for d in spec.shape]
                value = ort.OrtValue.ortvalue_from_shape_and_type(shape, spec.dtype, "cuda", 0)
                self._inputs[spec.name] = value
                self._binding.bind_ortvalue_input(spec.name, value)
        for output in session.get_outputs():
            shape = output.shape
            if all(isinstance(d, int) and d > 0 for d in shape):
                dtype = np.dtype(ort_numpy_from_onnx(output.type))
                value = ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, "cuda", 0)
                self._binding.bind_ortvalue_output(output.name, value)
            else:
                self._binding.bind_output(output.name, "cuda")

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        binding = self._binding
        for name, array in inputs.items():
            if self._graph:
                self._inputs[name].update_inplace(np.ascontiguousarray(array))
            else:
                binding.bind_cpu_input(name, np.ascontiguousarray(array))
        self.session.run_with_iobinding(binding, self._run_options)  # cancel() reaches it (backends/cpu.py)
        return dict(zip(self._output_names, binding.copy_outputs_to_cpu()))


def ort_numpy_from_onnx(ort_type: str) -> str:
    """onnxruntime's 'tensor(float)' style names to numpy dtype strings."""
    names = {"tensor(float)": "<f4", "tensor(float16)": "<f2", "tensor(double)": "<f8",
             "tensor(int64)": "<i8", "tensor(int32)": "<i4", "tensor(int16)": "<i2", "tensor(int8)": "<i1",
             "tensor(uint8)": "<u1", "tensor(uint16)": "<u2", "tensor(uint32)": "<u4",
             "tensor(uint64)": "<u8", "tensor(bool)": "|b1"}
    if ort_type not in names:
        raise ModelLoadFailed(f"the gpu backend cannot bind an output of type {ort_type}")
    return names[ort_type]
