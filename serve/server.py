"""Assemble and run the gRPC server: inference service, health, reflection, metrics.

``create_server(config)`` binds and starts everything and returns the server and
its gRPC port (port 0 picks a free one). ``run_server`` is the blocking form the
CLI uses: SIGINT/SIGTERM mark the health service NOT_SERVING, stop accepting new
RPCs, let queued and running requests finish within the grace period, then exit.
``ServerThread`` runs a server on its own event loop for tests and benchmarks.
Both run on uvloop unless ``ServerConfig.event_loop`` says "asyncio" (see ``loop_factory``).
"""
from __future__ import annotations

import asyncio
import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from protos import inference_pb2 as pb
from serve.admission import MAX_PENDING_RPCS
from serve.auth import TlsFiles, management_guard
from serve.drain import DrainReport
from serve.health import ModelHealth
from serve.metrics import Metrics
from serve.registry import ModelRegistry
from serve.repository import ModelRepository
from serve.service import InferenceService

log = logging.getLogger("bwserve")
SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    repo: Path
    host: str = "127.0.0.1"
    port: int = 8001
    metrics_port: int | None = 8002  # None: no metrics endpoint, and nothing recorded
    metrics_host: str | None = None  # where /metrics binds; None: ``host``
    models: tuple[str, ...] | None = None  # load these at start; None: every model in repo
    max_message_bytes: int = 64 * 1024 * 1024
    grace_s: float = 10.0
    drain_delay_s: float = 0.0  # on stop: NOT_SERVING, still serving, for this long first
    auth_token: str | None = None  # required for model management when set (serve/auth.py)
    tls: TlsFiles | None = None  # TLS on the gRPC port; with a CA, mutual TLS
    event_loop: str = "uvloop"  # or "asyncio", the standard library's (see loop_factory)
    # Calls gRPC's core holds that Python has not taken yet (the event loop is behind);
    # beyond it the core refuses new calls before any Python runs (see BwServer). None: no bound.
    max_pending_rpcs: int | None = MAX_PENDING_RPCS
    # RPCs Python may hold at once (grpc.aio's maximum_concurrent_rpcs); beyond it grpc.aio
    # refuses a call (RESOURCE_EXHAUSTED) before our handler runs. None: no limit (see BwServer).
    max_concurrent_rpcs: int | None = None


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the server's event loop.

    The loop's thread runs every request's gRPC Python (grpc.aio) and, at batch 1,
    the model too. On uvloop (libuv, compiled) that thread executes about a quarter
    fewer instructions per request than on asyncio's own loop, with the same server
    code (benchmarks/README.md, Serving overhead, "Session 4"). "asyncio" stays as
    the fallback.
    """
    if name == "asyncio":
        return asyncio.new_event_loop
    if name != "uvloop":
        raise ValueError(f"event loop {name!r}: expected uvloop or asyncio")
    try:
        import uvloop
    except ImportError:
        raise ValueError("event loop 'uvloop' is not installed: pip install uvloop, "
                         "or run on the standard library's loop with --event-loop asyncio") from None
    return uvloop.new_event_loop


def _reflection_pool() -> descriptor_pool.DescriptorPool:
    # Our protos live in a private pool (see protos/generate.py); reflection needs
    # one pool that knows every service the server exposes.
    pool = descriptor_pool.DescriptorPool()
    for module in (pb, health_pb2, reflection_pb2):
        pool.AddSerializedFile(module.DESCRIPTOR.serialized_pb)
    return pool


def _add_inference_service(servicer: InferenceService, server: grpc.aio.Server) -> None:
    """Register GRPCInferenceService as the generated ``add_..._to_server`` would, from its
    descriptor, except that ModelInfer returns its response already serialized
    (serve/codec.py) and the bytes pass through."""
    handlers = {}
    for method in SERVICE.methods:
        request, response = getattr(pb, method.input_type.name), getattr(pb, method.output_type.name)
        serialize = bytes if method.name == "ModelInfer" else response.SerializeToString
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name), request_deserializer=request.FromString, response_serializer=serialize)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    server.add_registered_method_handlers(SERVICE.full_name, handlers)


class BwServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.metrics = Metrics(enabled=config.metrics_port is not None)
        self.registry = ModelRegistry(ModelRepository(config.repo), self.metrics)
        self.metrics.watch(self.registry)
        self.model_health = ModelHealth(self.registry)
        self.health = self.model_health.servicer
        self._serving = False
        self.port = 0
        self.metrics_port: int | None = None
        options = [
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        if config.max_pending_rpcs is not None:
            # The front end's own queue: grpc.aio takes one call from the core per turn of
            # the event loop, and when the loop falls behind, calls wait in the core where
            # no deadline check of ours sees them. Bounded, the core sheds the excess
            # itself, each for a few microseconds of C++ and no Python, and the client
            # sees CANCELLED at once instead of DEADLINE_EXCEEDED later: fewer late
            # requests and more goodput at 3x overload on a ~1 ms model (benchmarks/README.md,
            # "Overload on a fast model"). The scheduler's intake hold leaves an overload's
            # excess here on purpose (serve/scheduler.py). The core's early detection (shedding
            # at random from a lower "soft" limit) stays off: with it at a quarter of 16, the
            # bursts of Poisson arrivals at 0.9x load lost 6% of calls, against 2% without it.
            options += [("grpc.server.max_pending_requests", config.max_pending_rpcs),
                        ("grpc.server.max_pending_requests_hard_limit", config.max_pending_rpcs)]
        guard = management_guard(config.host, config.auth_token, bool(config.tls and config.tls.ca))
        # Off by default: a refusal there costs the server about a quarter less CPU than the
        # door's (benchmarks/refusal_cost.py), but a fixed count of RPCs is the wrong bound for
        # a slow model with a long deadline, and it is shared by every model and health check.
        self.server = grpc.aio.server(options=options, interceptors=[guard] if guard else None,
                                      maximum_concurrent_rpcs=config.max_concurrent_rpcs)
        self.service = InferenceService(self.registry, self.metrics, lambda: self._serving)
        _add_inference_service(self.service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE.full_name, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), self.server, pool=_reflection_pool())

    @property
    def metrics_host(self) -> str:
        return self.config.metrics_host or self.config.host

    async def start(self) -> int:
        """Bind the ports, load the models, start serving; returns the gRPC port.

        The port opens before the models load so that a liveness probe passes while a
        model loads or compiles; health "" turns SERVING only once they are ready
        (see serve/health.py).
        """
        self.registry.repo.tidy()
        names = self.config.models if self.config.models is not None else self.registry.repo.models()
        await self.model_health.begin(names)
        address = f"{self.config.host}:{self.config.port}"
        if self.config.tls is not None:
            self.port = self.server.add_secure_port(address, self.config.tls.server_credentials())
        else:
            self.port = self.server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"cannot bind gRPC to {address}")
        if self.config.metrics_port is not None:
            self.metrics_port = self.metrics.serve_http(self.metrics_host, self.config.metrics_port)
        await self.server.start()
        await self.model_health.accepting()
        for name in names:
            try:
                await self.registry.load(name)
            except Exception as exc:  # one broken model must not keep the others down
                log.error("model %s not loaded: %s", name, exc)
        self._serving = True
        await self.model_health.follow()
        return self.port

    async def stop(self, grace: float | None = None) -> DrainReport:
        """Graceful stop: NOT_SERVING first, refuse new requests, drain, close the backends.

        With ``drain_delay_s`` the server keeps serving, NOT_SERVING, for that long
        before it refuses new RPCs: balancers that health-check (Envoy, gRPC clients
        with healthCheckConfig) move away first, so no request reaches it mid-shutdown.
        Then every accepted request finishes and every new one gets UNAVAILABLE, none
        CANCELLED (serve/drain.py); what happened is the report returned.
        """
        grace = self.config.grace_s if grace is None else grace
        self._serving = False
        await self.model_health.shutdown()
        if self.config.drain_delay_s > 0:
            await asyncio.sleep(self.config.drain_delay_s)
        report = await self.service.drain.stop(self.server, grace)
        await self.registry.close(timeout=grace)
        return report

    async def wait(self) -> None:
        await self.server.wait_for_termination()


async def create_server(config: ServerConfig) -> tuple[BwServer, int]:
    server = BwServer(config)
    port = await server.start()
    return server, port


def run_server(config: ServerConfig, on_ready=None) -> None:
    """Serve until SIGINT or SIGTERM, then drain and stop. Blocking."""

    async def main() -> None:
        server, port = await create_server(config)
        if on_ready is not None:
            on_ready(server)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("stopping: draining for up to %.1f s", config.grace_s)
        report = await server.stop()
        log.info("stopped: %d requests in flight finished, %d new ones refused (UNAVAILABLE), in %.2f s",
                 report.finished, report.refused, report.seconds)
        if report.still_running:
            log.warning("%d requests were still running when the grace period ran out: cancelled",
                        report.still_running)

    with asyncio.Runner(loop_factory=loop_factory(config.event_loop)) as runner:
        runner.run(main())


class ServerThread:
    """A server on its own event loop in a background thread (tests, benchmarks)."""

    def __init__(self, config: ServerConfig) -> None:
        self._loop = loop_factory(config.event_loop)()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bwserve-loop", daemon=True)
        self._thread.start()
        self.server: BwServer = self.call(self._create(config))
        self.port = self.server.port
        self.address = f"{config.host}:{self.port}"

    @staticmethod
    async def _create(config: ServerConfig) -> BwServer:
        server, _ = await create_server(config)
        return server

    def call(self, coro, timeout: float | None = 120):
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self, grace: float = 5.0) -> None:
        self.call(self.server.stop(grace))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> "ServerThread":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
