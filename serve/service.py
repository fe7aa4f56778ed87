"""The KServe v2 / Triton gRPC service (``inference.GRPCInferenceService``)."""
from __future__ import annotations

import asyncio
import logging
import math
import time
from time import perf_counter_ns

import grpc

import serve
from protos import inference_pb2 as pb
from protos import inference_pb2_grpc as pb_grpc
from serve.admission import FrontWait
from serve.datatypes import TRITON_ENUM
from serve.drain import Drain
from serve.errors import (DeadlineExpired, InvalidInput, ModelNotFound, Overloaded, QueueFull, ServeError,
                          status_of)
from serve.registry import LoadedModel, ModelRegistry
from serve.scheduler import DEFAULT_PRIORITY

log = logging.getLogger("bwserve")

EXTENSIONS = ("model_configuration", "statistics", "model_repository", "model_repository(unload_dependents)")
_REJECT_REASON = {Overloaded: "admission", QueueFull: "queue_full", DeadlineExpired: "deadline"}
_KIND = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}  # any other device manages itself: KIND_MODEL


def _priority(request: pb.ModelInferRequest) -> int:
    param = request.parameters.get("priority")
    if param is None:
        return DEFAULT_PRIORITY
    value = param.int64_param or param.uint64_param
    return value if value > 0 else DEFAULT_PRIORITY


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, registry: ModelRegistry, metrics, ready) -> None:
        self.registry = registry
        self.metrics = metrics
        self._ready = ready  # callable -> bool: False while starting or draining
        self.drain = Drain(lambda: metrics.inflight)  # how the server stops (serve/drain.py)
        self.front_wait = FrontWait()  # each call's wait before the door, from its deadline

    @staticmethod
    def _fail(context, exc: BaseException) -> None:
        """Set the error status; the handler returns None and gRPC sends the status after it.

        Not context.abort(): abort sends the status from inside the handler, so a client
        could see its error, scrape /metrics and still find the request in flight."""
        code = status_of(exc)
        if code is grpc.StatusCode.INTERNAL:
            log.exception("internal error", exc_info=exc)
        context.set_code(code)
        context.set_details(str(exc) or type(exc).__name__)

    # -- health and metadata ----------------------------------------------

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self._ready())

    async def ModelReady(self, request, context):
        try:
            self.registry.get(request.name, request.version)
        except ServeError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def ServerMetadata(self, request, context):
        return pb.ServerMetadataResponse(name="bwserve", version=serve.__version__, extensions=EXTENSIONS)

    async def ModelMetadata(self, request, context):
        try:
            model = self.registry.get(request.name, request.version)
        except ServeError as exc:
            return self._fail(context, exc)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=model.name,
            versions=[m.version for m in self.registry.loaded() if m.name == model.name],
            platform=f"onnx_{model.device}",
            inputs=[tensor(name=s.name, datatype=s.datatype, shape=s.shape) for s in model.config.inputs],
            outputs=[tensor(name=s.name, datatype=s.datatype, shape=s.shape) for s in model.config.outputs],
        )

    async def ModelConfig(self, request, context):
        try:
            model = self.registry.get(request.name, request.version)
        except ServeError as exc:
            return self._fail(context, exc)
        config = model.config
        kind = _KIND.get(model.device, "KIND_MODEL")
        return pb.ModelConfigResponse(config=pb.ModelConfig(
            name=model.name, platform="onnxruntime_onnx" if model.device in _KIND else "bwserve",
            backend=config.backend, max_batch_size=0,
            input=[pb.ModelInput(name=s.name, data_type=TRITON_ENUM[s.datatype], dims=s.shape)
                   for s in config.inputs],
            output=[pb.ModelOutput(name=s.name, data_type=TRITON_ENUM[s.datatype], dims=s.shape)
                    for s in config.outputs],
            instance_group=[pb.ModelInstanceGroup(name=model.device, count=config.instances, kind=kind)],
            parameters={"precision": pb.ModelParameter(string_value=config.precision)},
        ))

    async def ModelStatistics(self, request, context):
        models = self.registry.loaded()
        if request.name:
            try:
                self.registry.get(request.name, request.version)
            except ServeError as exc:
                return self._fail(context, exc)
            models = [m for m in models if m.name == request.name
                      and (not request.version or m.version == request.version)]
        return pb.ModelStatisticsResponse(model_stats=[m.stats.to_proto(m.name, m.version) for m in models])

    # -- inference --------------------------------------------------------

    async def ModelInfer(self, request, context):
        if self.drain.refusing:  # the server is stopping: held, then UNAVAILABLE
            exc = await self.drain.refusal()
            self.metrics.no_model(grpc.StatusCode.UNAVAILABLE).inc()
            return self._fail(context, exc)
        self.metrics.inflight += 1  # read by the metrics collector at scrape time
        start = perf_counter_ns()
        model: LoadedModel | None = None
        try:
            model = self.registry.get(request.model_name, request.model_version)
            remaining = context.time_remaining()
            waited = 0.0
            if remaining is not None:
                now = time.monotonic()
                deadline = now + remaining
                waited = self.front_wait.waited(context.peer(), remaining, now)
            elif model.config.slo_ms is not None:
                deadline = time.monotonic() + model.config.slo_ms / 1e3
            else:
                deadline = math.inf
            priority = _priority(request)
            scheduler = model.scheduler
            scheduler.admit(deadline, priority, waited)  # the door: shed before decode (serve/scheduler.py)
            inputs = model.codec.decode(request)
            names = model.codec.check_requested(request)
            decoded = perf_counter_ns()
            result = await scheduler.run(inputs, deadline, priority)
            ran = perf_counter_ns()
            response = model.codec.encode(result.outputs, names, request.id)
        except asyncio.CancelledError:  # the client cancelled or its deadline passed
            if model is not None:
                model.stats.failure(perf_counter_ns() - start, grpc.StatusCode.CANCELLED)
            raise
        except Exception as exc:
            code = status_of(exc)
            if model is not None:
                model.stats.failure(perf_counter_ns() - start, code, _REJECT_REASON.get(type(exc)),
                                    getattr(exc, "stage", None))
            else:  # no model resolved (unknown, not ready): counted without model labels
                self.metrics.no_model(code).inc()
            return self._fail(context, exc)
        else:
            model.stats.success(start, decoded, ran, perf_counter_ns(), result)
            return response
        finally:
            self.metrics.inflight -= 1

    # -- model repository -------------------------------------------------

    async def RepositoryIndex(self, request, context):
        entry = pb.RepositoryIndexResponse.ModelIndex
        rows = [entry(name=n, version=v, state=s, reason=r) for n, v, s, r in self.registry.index()
                if not request.ready or s == "READY"]
        return pb.RepositoryIndexResponse(models=rows)

    async def RepositoryModelLoad(self, request, context):
        try:
            if request.parameters:  # Triton's config override and file uploads
                raise InvalidInput(
                    f"RepositoryModelLoad parameters are not supported ({', '.join(sorted(request.parameters))}): "
                    "write the model into the repository with `serve deploy`, then load it by name")
            await self.registry.load(request.model_name)
        except Exception as exc:
            return self._fail(context, exc)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request, context):
        try:
            await self.registry.unload(request.model_name)
        except ModelNotFound as exc:
            return self._fail(context, exc)
        return pb.RepositoryModelUnloadResponse()
