"""bwserve's server: gRPC service, scheduler, model repository, metrics, CLI."""

__version__ = "0.1.0"
