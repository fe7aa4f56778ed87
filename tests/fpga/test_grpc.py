"""End to end: `serve deploy ... --backend fpga --option array=16x16` (or `engine=mvu`), then
tritonclient over gRPC."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from serve.deploy import prepare
from serve.repository import ModelRepository
from serve.server import ServerConfig, ServerThread
from tests.fpga.conftest import CNTK_MNIST, fpga

pytestmark = pytest.mark.skipif(not CNTK_MNIST.exists(), reason=f"{CNTK_MNIST} not present")
ENGINES = {"systolic": {"array": "16x16"}, "mvu": {"engine": "mvu"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = ModelRepository(tmp_path_factory.mktemp("repo"))
    for precision in ("fp32", "msfp16"):
        for engine, options in ENGINES.items():
            prepared = prepare([CNTK_MNIST], name=f"mnist_{precision}_{engine}", backend="fpga",
                               precision=precision, backend_options=options)
            repo.add(prepared.config, prepared.model_bytes)
    handle = ServerThread(ServerConfig(repo=repo.root, port=0, metrics_port=0))
    handle.repo = repo
    yield handle
    handle.stop()


def _infer(address: str, model: str, x: np.ndarray) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    with grpcclient.InferenceServerClient(address) as client:
        inp = grpcclient.InferInput("Input3", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        return client.infer(model, [inp]).as_numpy("Plus214_Output_0")


def _metric(server, name: str, model: str) -> float:
    for family in server.server.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and sample.labels.get("model") == model:
                return sample.value
    raise KeyError(name)


@pytest.mark.parametrize("precision", ["fp32", "msfp16"])
@pytest.mark.parametrize("engine", list(ENGINES))
def test_served_outputs_equal_the_backend_run_locally(server, precision, engine):
    model, options = f"mnist_{precision}_{engine}", ENGINES[engine]
    prepared = prepare([CNTK_MNIST], backend="fpga", precision=precision, backend_options=options, trial_load=False)
    local = fpga(onnx.load_from_string(prepared.model_bytes), prepared.config.layer_formats, **options)
    assert local.engine_name == engine
    x = numpy_helper.to_array(onnx.load_tensor(str(CNTK_MNIST.parent / "test_data_set_1" / "input_0.pb")))
    y = numpy_helper.to_array(onnx.load_tensor(str(CNTK_MNIST.parent / "test_data_set_1" / "output_0.pb")))
    served = _infer(server.address, model, x)
    assert np.array_equal(served, local.run({"Input3": x})["Plus214_Output_0"])
    assert served.argmax() == y.argmax()
    stats = local.last_device_stats()
    assert _metric(server, "bwserve_device_cycles_sum", model) >= stats.cycles
    assert _metric(server, "bwserve_device_cycles_count", model) >= 1
    served_n = _metric(server, "bwserve_mac_utilisation_ratio_count", model)
    assert _metric(server, "bwserve_mac_utilisation_ratio_sum", model) == pytest.approx(
        served_n * stats.mac_utilisation)
