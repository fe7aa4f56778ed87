"""The obvious Python KServe v2 server: grpc.aio + onnxruntime, nothing clever.

What someone would write in an afternoon: one servicer, ``np.frombuffer`` over
each raw input, ``session.run`` right on the event loop, ``tobytes`` back.
benchmarks/serving.py measures bwserve against it; bwserve should be no slower.
The session gets the same options as bwserve's CPU backend, so both servers run
the model at the same speed and only the serving around it differs.

    python benchmarks/baselines/obvious_grpc.py MODEL.onnx --port 8011
"""
from __future__ import annotations

import argparse
import asyncio

import grpc
import numpy as np
import onnxruntime as ort

from backends.base import ModelSpec
from backends.cpu import CpuBackend
from protos import inference_pb2 as pb
from protos import inference_pb2_grpc as pb_grpc
from serve.datatypes import FROM_NUMPY, NUMPY

# onnxruntime's type strings for the tensors our models use.
_ORT_TYPES = {"tensor(float)": "FP32", "tensor(int64)": "INT64", "tensor(int32)": "INT32",
              "tensor(double)": "FP64", "tensor(uint8)": "UINT8", "tensor(bool)": "BOOL"}


class ObviousService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, name: str, session: ort.InferenceSession) -> None:
        self.name = name
        self.session = session

    async def ModelMetadata(self, request, context):
        tensor = pb.ModelMetadataResponse.TensorMetadata
        describe = lambda args: [tensor(name=a.name, datatype=_ORT_TYPES[a.type],  # noqa: E731
                                        shape=[d if isinstance(d, int) else -1 for d in a.shape])
                                 for a in args]
        return pb.ModelMetadataResponse(name=self.name, versions=["1"], platform="onnxruntime_onnx",
                                        inputs=describe(self.session.get_inputs()),
                                        outputs=describe(self.session.get_outputs()))

    async def ModelInfer(self, request, context):
        feeds = {t.name: np.frombuffer(raw, dtype=NUMPY[t.datatype]).reshape(tuple(t.shape))
                 for t, raw in zip(request.inputs, request.raw_input_contents)}
        outputs = self.session.run(None, feeds)
        response = pb.ModelInferResponse(model_name=self.name, model_version="1", id=request.id)
        for meta, array in zip(self.session.get_outputs(), outputs):
            response.outputs.add(name=meta.name, datatype=FROM_NUMPY[array.dtype], shape=array.shape)
            response.raw_output_contents.append(array.tobytes())
        return response


def session(model_path: str, threads: int = 0) -> ort.InferenceSession:
    """An onnxruntime session with exactly bwserve's CPU backend options."""
    options = CpuBackend(ModelSpec(name="baseline", threads=threads), 0).session_options()
    return ort.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])


async def serve(model_path: str, name: str, port: int, threads: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(ObviousService(name, session(model_path, threads)), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="ONNX file")
    parser.add_argument("--name", default="model", help="model name it answers to (any is accepted)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: as bwserve chooses)")
    args = parser.parse_args()
    asyncio.run(serve(args.model, args.name, args.port, args.threads))


if __name__ == "__main__":
    main()
