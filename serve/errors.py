"""Typed errors inside the server, and the one table that turns them into gRPC codes."""
from __future__ import annotations

import grpc

from backends.base import BackendUnavailable, DeviceUnavailable, ModelLoadFailed


class ServeError(Exception):
    """Base of every error the server reports to a client."""


class ModelNotFound(ServeError):
    """No such model or version in the repository or registry."""


class ModelNotReady(ServeError):
    """The model exists but is loading, unloading or failed to load."""


class InvalidInput(ServeError):
    """The request does not match the model's signature (names, dtypes, shapes, bytes)."""


class InvalidModel(ServeError):
    """A model file or config that cannot be deployed (corrupt, unsupported)."""


class Shed(ServeError):
    """A request refused or dropped to protect the others; ``stage`` says where.

    "door": before decode (serve/service.py asks the scheduler first); "scheduler":
    when it was queued; "expired": dropped unrun after its deadline passed in the queue.
    """

    def __init__(self, message: str, stage: str = "scheduler") -> None:
        super().__init__(message)
        self.stage = stage


class Overloaded(Shed):
    """Admission control predicts the request would miss its deadline."""


class QueueFull(Shed):
    """The model's queue is at max_queue_size."""


class DeadlineExpired(Shed):
    """The request's deadline passed before it could run."""


class InstanceHung(ServeError):
    """A backend instance ran past its hang timeout; it is being replaced."""


class ShuttingDown(ServeError):
    """The server is draining and accepts no new work."""


STATUS: dict[type[BaseException], grpc.StatusCode] = {
    ModelNotFound: grpc.StatusCode.NOT_FOUND,
    ModelNotReady: grpc.StatusCode.UNAVAILABLE,
    InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    InvalidModel: grpc.StatusCode.INVALID_ARGUMENT,
    ModelLoadFailed: grpc.StatusCode.INVALID_ARGUMENT,
    BackendUnavailable: grpc.StatusCode.FAILED_PRECONDITION,
    DeviceUnavailable: grpc.StatusCode.UNAVAILABLE,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    QueueFull: grpc.StatusCode.UNAVAILABLE,
    DeadlineExpired: grpc.StatusCode.DEADLINE_EXCEEDED,
    ShuttingDown: grpc.StatusCode.UNAVAILABLE,
    InstanceHung: grpc.StatusCode.INTERNAL,
}


def status_of(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status for an exception; anything unexpected is INTERNAL."""
    for cls in type(exc).__mro__:
        code = STATUS.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL
