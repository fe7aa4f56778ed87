"""The gpu backend without a GPU: provider choice and the errors a user sees.

Its GPU behaviour is checked by benchmarks/gpu_check.sh on a machine with one.
"""
from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from backends import BackendUnavailable, ModelSpec, get_backend
from backends.gpu import CUDA, TENSORRT, select_providers

CACHE = Path("/repo/m/1/trt_cache")


def test_cuda_only_with_graphs_by_default() -> None:
    providers = select_providers([CUDA, "CPUExecutionProvider"], {}, "fp32", CACHE, trt_present=False)
    assert [p[0] for p in providers] == [CUDA]
    assert providers[0][1]["enable_cuda_graph"] == "1"


def test_cuda_graphs_can_be_turned_off() -> None:
    providers = select_providers([CUDA], {"cuda_graph": "0"}, "fp32", CACHE, trt_present=False)
    assert providers[0][1]["enable_cuda_graph"] == "0"


def test_tensorrt_first_when_present_with_cache_beside_the_model_and_fp16() -> None:
    providers = select_providers([TENSORRT, CUDA], {}, "fp16", CACHE, trt_present=True)
    assert [p[0] for p in providers] == [TENSORRT, CUDA]
    assert providers[0][1]["trt_engine_cache_path"] == str(CACHE)
    assert providers[0][1]["trt_fp16_enable"] == "True"


def test_tensorrt_listed_but_libraries_missing_falls_to_cuda_unless_demanded() -> None:
    assert [p[0] for p in select_providers([TENSORRT, CUDA], {}, "fp32", CACHE, trt_present=False)] == [CUDA]
    with pytest.raises(BackendUnavailable, match="TensorRT is not available"):
        select_providers([TENSORRT, CUDA], {"tensorrt": "1"}, "fp32", CACHE, trt_present=False)


def test_bad_option_value_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="cuda_graph='yes'"):
        select_providers([CUDA], {"cuda_graph": "yes"}, "fp32", CACHE, trt_present=False)


def test_without_cuda_provider_the_error_names_the_extra() -> None:
    with pytest.raises(BackendUnavailable, match=r"\[gpu\] extra"):
        select_providers(["CPUExecutionProvider"], {}, "fp32", CACHE, trt_present=False)


@pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="this machine has a CUDA onnxruntime")
def test_loading_on_this_cpu_machine_refuses_instead_of_running_on_the_cpu(tmp_path) -> None:
    from models.examples import mlp
    import onnx

    path = tmp_path / "model.onnx"
    onnx.save(mlp.build((8, 4)), path)
    backend = get_backend("gpu")(ModelSpec(name="m"), 0)
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
        backend.load(path)


def test_deploy_with_gpu_backend_fails_at_deploy_with_the_reason(tmp_path) -> None:
    if CUDA in ort.get_available_providers():
        pytest.skip("this machine has a CUDA onnxruntime")
    import onnx

    from models.examples import mlp
    from serve.deploy import prepare

    path = tmp_path / "tiny.onnx"
    onnx.save(mlp.build((8, 4)), path)
    with pytest.raises(BackendUnavailable, match=r"\[gpu\] extra"):
        prepare([path], backend="gpu")


def test_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(BackendUnavailable, match="cpu, fpga, gpu, null"):
        get_backend("tpu")
