"""KServe's Python ModelServer around onnxruntime, gRPC v2 on --port.

Runs in .cache/kserve-venv (made by kserve_setup.sh), never in the project's
venv: kserve pins its own grpcio/protobuf/fastapi ranges. So nothing from
bwserve is imported here, and the session options below repeat those of
backends/cpu.py by hand (keep them in step) so that the model runs exactly as
fast as in bwserve and only the serving around it differs.

Request logging is off: no per-request latency log line and the kserve logger
(whose gRPC interceptor logs every method at INFO) at WARNING.

    .cache/kserve-venv/bin/python benchmarks/baselines/kserve_onnx.py MODEL.onnx \
        --port 8013 --http-port 8093
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

import onnxruntime as ort

# kserve parses sys.argv when it is imported; hand it none of ours.
_argv, sys.argv = sys.argv, sys.argv[:1]
import kserve  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer  # noqa: E402

sys.argv = _argv


def _loopback_only() -> None:
    """KServe 0.21 binds gRPC to [::] and REST to 0.0.0.0 with no option to change
    it; benchmarks stay on 127.0.0.1, so rewrite both addresses as they are bound."""
    import grpc.aio
    import uvicorn

    make_server, make_config = grpc.aio.server, uvicorn.Config

    def server(*args, **kwargs):
        srv = make_server(*args, **kwargs)
        add = srv.add_insecure_port
        srv.add_insecure_port = lambda address: add(address.replace("[::]", "127.0.0.1"))
        return srv

    grpc.aio.server = server
    uvicorn.Config = lambda app, **kwargs: make_config(app, **{**kwargs, "host": "127.0.0.1"})

# onnxruntime element types -> KServe v2 datatypes, for the tensors our models use.
_DATATYPES = {"float32": "FP32", "int64": "INT64", "int32": "INT32", "float64": "FP64", "uint8": "UINT8"}


def session_options() -> ort.SessionOptions:
    """bwserve's CPU backend options (backends/cpu.py), for one instance."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = max(1, len(os.sched_getaffinity(0)))
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


class OnnxModel(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        self.session = ort.InferenceSession(self.path, sess_options=session_options(),
                                            providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.ready = True
        return self.ready

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        feeds = {tensor.name: tensor.as_numpy() for tensor in payload.inputs}
        outputs = self.session.run(self.output_names, feeds)
        infer_outputs = []
        for name, array in zip(self.output_names, outputs):
            # KServe's documented raw-bytes path. (Passing data=array instead trips
            # 0.21's to_grpc, which tests an ndarray's truth value.)
            output = InferOutput(name=name, shape=list(array.shape), datatype=_DATATYPES[array.dtype.name])
            output.set_data_from_numpy(array, binary_data=True)
            infer_outputs.append(output)
        return InferResponse(response_id=payload.id, model_name=self.name, infer_outputs=infer_outputs,
                             use_binary_outputs=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="ONNX file")
    parser.add_argument("--name", default="model")
    parser.add_argument("--port", type=int, required=True, help="gRPC port")
    parser.add_argument("--http-port", type=int, required=True, help="REST port (KServe always opens one)")
    args = parser.parse_args()
    _loopback_only()
    model = OnnxModel(args.name, args.model)
    server = ModelServer(grpc_port=args.port, http_port=args.http_port, workers=1,
                         enable_grpc=True, enable_latency_logging=False)
    logging.getLogger(kserve.logging.KSERVE_LOGGER_NAME).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    server.start([model])


if __name__ == "__main__":
    main()
