"""A small gRPC client on bwserve's own stubs, for the CLI and the benchmarks.

Users' programs can use any KServe v2 client (``tritonclient[grpc]``); this one
exists so the CLI needs no extra package and can pre-build requests for load.
"""
from __future__ import annotations

import grpc
import numpy as np

from protos import inference_pb2 as pb
from protos import inference_pb2_grpc as pb_grpc
from serve.codec import decode_bytes, encode_bytes
from serve.datatypes import FROM_NUMPY, NUMPY

# Client-side balancing over every address a name resolves to (dns:///name:port, e.g. a
# headless Service), retrying UNAVAILABLE (a draining or dead replica) on another one.
SERVICE_CONFIG = """{
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [{"service": "inference.GRPCInferenceService"}],
    "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.01s", "maxBackoff": "0.1s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
  }]
}"""

# The same, plus client-side health checking: the channel watches grpc.health.v1 ("")
# on every address and skips replicas that say NOT_SERVING, so a draining replica
# (serve start --drain-delay-s) gets no new requests before it refuses them. Only for
# addresses that are the replicas themselves: through a proxy the watch is proxied
# to one replica behind it, whose NOT_SERVING would cut the client off the proxy.
HEALTH_CHECKED_SERVICE_CONFIG = SERVICE_CONFIG[:-1].rstrip() + """,
  "healthCheckConfig": {"serviceName": ""}
}"""

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
]


def channel_options(authority: str | None = None, health_check: bool = False) -> list[tuple[str, object]]:
    """CHANNEL_OPTIONS, with ``:authority`` set (an ingress's host name, when the target is
    its address) and/or client-side health checking (replica addresses only, see above)."""
    options = [o for o in CHANNEL_OPTIONS if not (health_check and o[0] == "grpc.service_config")]
    if health_check:
        options.append(("grpc.service_config", HEALTH_CHECKED_SERVICE_CONFIG))
    if authority:
        options.append(("grpc.default_authority", authority))
    return options


def build_request(model: str, inputs: dict[str, np.ndarray], version: str = "",
                  outputs: list[str] | None = None) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, model_version=version)
    for name, array in inputs.items():
        datatype = FROM_NUMPY[array.dtype]
        request.inputs.add(name=name, datatype=datatype, shape=array.shape)
        request.raw_input_contents.append(
            encode_bytes(array) if datatype == "BYTES" else np.ascontiguousarray(array).tobytes())
    for name in outputs or ():
        request.outputs.add(name=name)
    return request


def parse_response(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    arrays = {}
    for tensor, raw in zip(response.outputs, response.raw_output_contents):
        shape = tuple(tensor.shape)
        if tensor.datatype == "BYTES":
            arrays[tensor.name] = decode_bytes(raw, int(np.prod(shape)), tensor.name).reshape(shape)
        else:
            arrays[tensor.name] = np.frombuffer(raw, dtype=NUMPY[tensor.datatype]).reshape(shape)
    return arrays


def random_inputs(metadata: pb.ModelMetadataResponse, seed: int = 0) -> dict[str, np.ndarray]:
    """Random tensors matching a model's metadata (dynamic dimensions as 1)."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for spec in metadata.inputs:
        shape = [d if d > 0 else 1 for d in spec.shape]
        dtype = NUMPY[spec.datatype]
        if spec.datatype == "BYTES":
            inputs[spec.name] = np.full(shape, b"bwserve", dtype=object)
        elif dtype.kind == "f":
            inputs[spec.name] = rng.random(shape).astype(dtype)
        elif dtype.kind == "b":
            inputs[spec.name] = rng.random(shape) < 0.5
        else:
            inputs[spec.name] = rng.integers(0, 10, size=shape).astype(dtype)
    return inputs


class Client:
    def __init__(self, address: str, timeout: float = 30.0, token: str | None = None) -> None:
        self.address = address
        self.timeout = timeout
        # Model management carries the server's bearer token when it has one (serve/auth.py).
        self._auth = (("authorization", f"Bearer {token}"),) if token else None
        self.channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def live(self, timeout: float = 1.0) -> bool:
        try:
            return self.stub.ServerLive(pb.ServerLiveRequest(), timeout=timeout).live
        except grpc.RpcError:
            return False

    def metadata(self, model: str, version: str = "") -> pb.ModelMetadataResponse:
        return self.stub.ModelMetadata(pb.ModelMetadataRequest(name=model, version=version), timeout=self.timeout)

    def infer(self, model: str, inputs: dict[str, np.ndarray], version: str = "",
              outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        request = build_request(model, inputs, version, outputs)
        return parse_response(self.stub.ModelInfer(request, timeout=self.timeout))

    def load(self, model: str) -> None:
        self.stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=model), timeout=600,
                                      metadata=self._auth)

    def unload(self, model: str) -> None:
        self.stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=model), timeout=600,
                                        metadata=self._auth)

    def index(self) -> list[pb.RepositoryIndexResponse.ModelIndex]:
        return list(self.stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=self.timeout,
                                              metadata=self._auth).models)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
