"""The floor: a grpc.aio server that answers ModelInfer with an empty response.

No decoding, no model, no encoding: what Python gRPC alone costs per request.
benchmarks/serving.py compares bwserve's overhead (its p50 minus the model's
``session.run`` p50) with this server's p50.

    python benchmarks/baselines/empty_grpc.py --port 8012
"""
from __future__ import annotations

import argparse
import asyncio

import grpc

from protos import inference_pb2 as pb
from protos import inference_pb2_grpc as pb_grpc

_EMPTY = pb.ModelInferResponse()


class EmptyService(pb_grpc.GRPCInferenceServiceServicer):
    async def ModelInfer(self, request, context):
        return _EMPTY


async def serve(port: int) -> None:
    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(EmptyService(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
