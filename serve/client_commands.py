"""``serve list | undeploy | infer | bench``: commands that talk to a running server.

Also the options and the client that ``serve deploy`` shares with them.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_REPO = Path(os.environ.get("BWSERVE_REPO", "model_repository"))


def add_repo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", type=Path, default=DEFAULT_REPO,
                   help="model repository directory (default $BWSERVE_REPO or ./%(default)s)")


def add_target(p: argparse.ArgumentParser, management: bool = False) -> None:
    p.add_argument("--server", default="127.0.0.1:8001", help="address of a running server (default %(default)s)")
    if management:
        p.add_argument("--auth-token-file", type=Path,
                       help="the server's management token (default $BWSERVE_AUTH_TOKEN)")


def register(sub) -> None:
    p = sub.add_parser("list", help="list the repository's models and, if a server runs, their state")
    add_repo(p)
    add_target(p, management=True)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("undeploy", help="unload a model from the server and delete it from the repository")
    p.add_argument("name")
    add_repo(p)
    add_target(p, management=True)
    p.set_defaults(func=cmd_undeploy)

    p = sub.add_parser("infer", help="send one request and print the outputs and the latency")
    p.add_argument("name")
    p.add_argument("--version", default="")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy",
                   help="input tensor from a .npy file (default: random data of the model's shape)")
    p.add_argument("--seed", type=int, default=0)
    add_target(p)
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("bench", help="batch-1 load over gRPC; prints latency percentiles and throughput")
    p.add_argument("name")
    p.add_argument("--concurrency", type=int, default=1, help="requests in flight, closed loop (default %(default)s)")
    p.add_argument("--rate", type=float, help="open loop instead: Poisson arrivals per second")
    p.add_argument("--requests", type=int, default=2000, help="at most this many requests (default %(default)s)")
    p.add_argument("--duration", type=float, default=30.0, help="at most this many seconds (default %(default)s)")
    p.add_argument("--timeout-ms", type=float, help="gRPC deadline per request")
    p.add_argument("--authority", help="HTTP/2 :authority to send, e.g. an ingress's host name when --server is "
                                       "its address (grpc.default_authority)")
    p.add_argument("--health-check", action="store_true",
                   help="skip replicas whose grpc.health.v1 says NOT_SERVING; only when --server resolves to the "
                        "replicas themselves (dns:///headless-service:8001), never through a proxy")
    add_target(p)
    p.set_defaults(func=cmd_bench)


def rpc_failure(exc, address: str) -> str:
    """What to print for a failed call: the server's status, or that no server answers at all.

    gRPC's own text for a refused connection ("connections to all backends failing;
    last error: UNKNOWN: ipv4:...") does not say what to do about it.
    """
    import grpc

    from serve.client import Client

    if exc.code() is grpc.StatusCode.UNAVAILABLE:
        with Client(address) as probe:
            if not probe.live():
                return (f"no bwserve server answers at {address}: start one with `serve deploy` or `serve start`, "
                        "or name where one runs with --server")
    return f"{exc.code().name}: {exc.details()}"


def client_for(args):
    """A client carrying the management token (--auth-token-file or $BWSERVE_AUTH_TOKEN)."""
    from serve.auth import read_token
    from serve.client import Client

    return Client(args.server, token=read_token(getattr(args, "auth_token_file", None)))


def cmd_list(args) -> int:
    from rich.table import Table

    from serve.repository import ModelRepository

    repo = ModelRepository(args.repo)
    states = {}
    client = client_for(args)
    if client.live():
        states = {(m.name, m.version): (m.state, m.reason) for m in client.index()}
    table = Table("model", "version", "backend", "precision", "inputs", "state")
    for name in repo.models():
        for version in repo.versions(name):
            config = repo.read_config(name, version)
            inputs = ", ".join(f"{t.name} {t.datatype}{list(t.shape)}" for t in config.inputs)
            state, reason = states.get((name, str(version)), ("not served", ""))
            table.add_row(name, str(version), ",".join(config.backends), config.precision, inputs,
                          state + (f" ({reason})" if reason else ""))
    from rich.console import Console

    Console().print(table)
    return 0


def cmd_undeploy(args) -> int:
    import grpc

    from serve.errors import ServeError
    from serve.repository import ModelRepository

    client = client_for(args)
    if client.live():
        try:
            client.unload(args.name)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                print(f"server refused: {exc.details()}", file=sys.stderr)
                return 1
    try:
        ModelRepository(args.repo).remove(args.name)
    except ServeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"removed {args.name}")
    return 0


def cmd_infer(args) -> int:
    import time

    import grpc
    import numpy as np

    from serve.client import Client, random_inputs

    with Client(args.server) as client:
        try:
            metadata = client.metadata(args.name, args.version)
            inputs = random_inputs(metadata, args.seed)
            for pair in args.input:
                name, _, path = pair.partition("=")
                inputs[name] = np.load(path)
            start = time.perf_counter()
            outputs = client.infer(args.name, inputs, args.version)
            elapsed = time.perf_counter() - start
        except grpc.RpcError as exc:
            print(rpc_failure(exc, args.server), file=sys.stderr)
            return 1
    np.set_printoptions(precision=4, suppress=True, linewidth=120)
    for name, array in outputs.items():
        print(f"{name} {array.dtype}{list(array.shape)}:\n{array}")
    print(f"latency {elapsed * 1e3:.3f} ms (first request on a new connection)")
    return 0


def cmd_bench(args) -> int:
    import grpc

    from protos import inference_pb2 as pb
    from protos import inference_pb2_grpc as pb_grpc
    from serve.bench import run_load
    from serve.client import build_request, channel_options, random_inputs

    # --server may be any gRPC target: host:port, dns:///name:port (round_robin over
    # every address), or an ingress's address with --authority naming the host.
    options = channel_options(args.authority, args.health_check)
    with grpc.insecure_channel(args.server, options=options) as channel:
        try:
            metadata = pb_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(
                pb.ModelMetadataRequest(name=args.name), timeout=30)
            request = build_request(args.name, random_inputs(metadata))
        except grpc.RpcError as exc:
            print(rpc_failure(exc, args.server), file=sys.stderr)
            return 1
    mode = f"rate {args.rate}/s (open loop)" if args.rate else f"concurrency {args.concurrency}"
    print(f"bench {args.name} at {args.server}: {mode}, up to {args.requests} requests / {args.duration:g} s")
    result = run_load(args.server, request, concurrency=args.concurrency, requests=args.requests,
                      duration=args.duration, rate=args.rate,
                      timeout=args.timeout_ms / 1e3 if args.timeout_ms else None, authority=args.authority,
                      health_check=args.health_check)
    print(result.format())
    return 0
