"""``serve deploy | start``: commands that write the repository and run a server."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from models.convert.shapes import add_input_shape_argument
from serve.admission import MAX_PENDING_RPCS
from serve.client_commands import DEFAULT_REPO, add_repo, add_target, client_for


def _add_server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    p.add_argument("--port", type=int, default=8001, help="gRPC port; 0 picks a free one (default %(default)s)")
    p.add_argument("--metrics-port", type=int, default=8002,
                   help="Prometheus /metrics port; 0 picks a free one, -1 disables (default %(default)s)")
    p.add_argument("--metrics-host",
                   help="address /metrics binds, e.g. a scrape network's while gRPC keeps --host (default: --host)")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate: serve gRPC over TLS (with --tls-key)")
    p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    p.add_argument("--tls-ca", type=Path, help="PEM CA: require client certificates it signed (mutual TLS)")
    p.add_argument("--event-loop", choices=("uvloop", "asyncio"), default="uvloop",
                   help="the server's event loop: uvloop (faster per request) or the standard library's "
                        "asyncio (default %(default)s)")
    p.add_argument("--auth-token-file", type=Path,
                   help="file holding the bearer token that model management RPCs must carry "
                        "(default: $BWSERVE_AUTH_TOKEN; none: management is open on loopback only)")
    p.add_argument("--max-pending-rpcs", type=_count, default=MAX_PENDING_RPCS, metavar="N",
                   help="calls gRPC's core holds while the event loop is behind under overload; beyond N it "
                        "sheds every new call before any Python runs (the client sees CANCELLED); "
                        "0: no bound (default %(default)s)")
    p.add_argument("--max-concurrent-rpcs", type=_count, default=0, metavar="N",
                   help="RPCs the server holds at once (queued or running); beyond N, grpc.aio refuses new "
                        "ones with RESOURCE_EXHAUSTED before the server's own code runs. 0: no limit (default), "
                        "the deadline-based door decides")


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a count, 0 for none")
    return int(text)


def register(sub) -> None:
    p = sub.add_parser("deploy", help="add a model to the repository and serve it",
                       description="Write a model into the repository and load it into the server at "
                                   "--server if one runs there; otherwise start a server in the foreground "
                                   "(Ctrl-C stops it). With no MODEL, deploys the built-in digits classifier.")
    p.add_argument("model", nargs="*", type=Path,
                   help="model file(s): .onnx, Caffe .prototxt + .caffemodel, TF .pb/SavedModel, torch .pt")
    p.add_argument("--name", help="model name (default: from the file name)")
    p.add_argument("--from", dest="framework", help="source framework (default: detected)")
    add_input_shape_argument(p)
    p.add_argument("--backend", default="cpu",
                   help="cpu, gpu, fpga or null; comma-separated (cpu,fpga) serves the model on each, a request "
                        "going where it is predicted to finish first (default %(default)s)")
    p.add_argument("--instances", type=int, default=1, help="backend instances (default %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads per instance (0: cores / instances)")
    p.add_argument("--precision", default="fp32",
                   help="fp32, a narrow format or auto, see `serve quantize` (default %(default)s)")
    p.add_argument("--calibration", help="calibration data for --precision auto/int8: mnist, digits or an .npz")
    p.add_argument("--budget", type=float,
                   help="--precision auto: accuracy points (labelled data) or relative output error allowed")
    p.add_argument("--slo-ms", type=float, help="deadline for requests that carry none")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="backend option, e.g. sleep_ms=1 for the null backend (repeatable)")
    p.add_argument("--verbose", action="store_true",
                   help="let the importers (TensorFlow, tf2onnx) log as they do; quiet by default")
    add_repo(p)
    add_target(p)
    _add_server_args(p)
    p.set_defaults(func=cmd_deploy, needs_runtime=True)

    p = sub.add_parser("start", help="serve the models of a repository, or a model directory (KServe)",
                       description="Serve a repository, or (KServe's layout) --model-dir: a repository or a "
                                   "folder holding one model file, served as --model-name. SIGTERM turns health "
                                   "NOT_SERVING, then drains for up to --grace-s and exits.")
    p.add_argument("--repo", type=Path,
                   help="model repository (default $BWSERVE_REPO or ./model_repository); with --model-dir "
                        "holding a model file: where it is deployed (default: a temporary directory)")
    p.add_argument("--model", action="append", help="load only this model (repeatable; default: all)")
    p.add_argument("--model-dir", type=Path, help="KServe's model directory, e.g. /mnt/models")
    p.add_argument("--model-name", help="with --model-dir: the model's name (KServe's {{.Name}})")
    p.add_argument("--backend", default="cpu", help="with a model file in --model-dir: cpu, gpu, fpga or null")
    p.add_argument("--precision", default="fp32", help="with a model file in --model-dir (default %(default)s)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="with a model file in --model-dir: backend option (repeatable)")
    p.add_argument("--grace-s", type=float, default=10.0,
                   help="on SIGTERM, wait this long for running requests, then again for the backends "
                        "(default %(default)s)")
    p.add_argument("--drain-delay-s", type=float, default=0.0,
                   help="on SIGTERM, keep serving this long while health says NOT_SERVING, so that "
                        "balancers move away before new RPCs are refused (default %(default)s)")
    _add_server_args(p)
    p.set_defaults(func=cmd_start, needs_runtime=True)


def _console():
    from rich.console import Console

    return Console(stderr=True)


def _server_config(args, models=None):
    from serve.server import ServerConfig

    from serve.auth import TlsFiles, read_token

    metrics_port = None if args.metrics_port < 0 else args.metrics_port
    if bool(args.tls_cert) != bool(args.tls_key) or (args.tls_ca and not args.tls_cert):
        raise SystemExit("TLS needs both --tls-cert and --tls-key (and --tls-ca only with them)")
    tls = TlsFiles(args.tls_cert, args.tls_key, args.tls_ca) if args.tls_cert else None
    return ServerConfig(repo=args.repo, host=args.host, port=args.port, metrics_port=metrics_port,
                        metrics_host=args.metrics_host, models=models,
                        grace_s=getattr(args, "grace_s", 10.0),
                        drain_delay_s=getattr(args, "drain_delay_s", 0.0), tls=tls,
                        auth_token=read_token(args.auth_token_file), event_loop=args.event_loop,
                        max_pending_rpcs=args.max_pending_rpcs or None,
                        max_concurrent_rpcs=args.max_concurrent_rpcs or None)


def _serve_foreground(config) -> int:
    import asyncio

    from serve.server import loop_factory, run_server

    try:
        loop_factory(config.event_loop)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None

    def ready(server) -> None:
        metrics = f", metrics on http://{server.metrics_host}:{server.metrics_port}/metrics" if server.metrics_port else ""
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # what runs, not what was asked for
        print(f"bwserve serving on {config.host}:{server.port}{metrics} (event loop: {loop}); Ctrl-C stops",
              flush=True)
        for model in server.registry.loaded():
            print(f"  {model.name} v{model.version} on {model.device}", flush=True)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run_server(config, on_ready=ready)
    return 0


def _quiet_importers() -> None:
    """TensorFlow prints a dozen start-up lines (oneDNN, CPU features, deprecations) on import
    and while tf2onnx runs; none of them is about the user's model. Before it is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # its C++ (absl) log: errors only
    # The oneDNN notice is logged before that level applies; without oneDNN's custom ops
    # TensorFlow's own kernels round differently, which a conversion does not depend on.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    for name in ("tensorflow", "tf2onnx", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--option {pair!r}: expected KEY=VALUE")
        options[key] = value
    return options


def cmd_deploy(args) -> int:
    from serve.deploy import prepare
    from serve.errors import ServeError
    from serve.repository import ModelRepository
    from backends import BackendUnavailable, ModelLoadFailed

    from rich.markup import escape  # messages name extras like [gpu]: text, not markup

    console = _console()
    if not args.verbose:
        _quiet_importers()
    client = client_for(args)
    remote = client.live()
    options = _options(args.option)  # every argument is checked before any work (serve/preflight.py)
    server_config = None if remote else _server_config(args)
    try:
        with console.status("preparing model") as status:
            prepared = prepare(
                args.model or None, name=args.name, backend=args.backend, framework=args.framework,
                input_shapes=dict(args.input_shape),
                precision=args.precision, instances=args.instances, slo_ms=args.slo_ms, threads=args.threads,
                calibration=args.calibration, budget=args.budget,
                backend_options=options, trial_load=not remote,
                progress=lambda msg: status.update(msg))
    except (ServeError, BackendUnavailable, ModelLoadFailed, ValueError) as exc:
        console.print(f"[red]deploy failed:[/red] {escape(str(exc))}")
        return 1
    for note in prepared.notes:
        console.print(escape(note))
    repo = ModelRepository(args.repo)
    name = prepared.config.name
    new_dirs = [d for d in (repo.root, repo.root / name) if not d.exists()]  # removed again if refused
    version = repo.find(prepared.config, prepared.model_bytes)
    written = version is None
    try:
        if not written:
            console.print(f"{name} version {version} in {args.repo} is this model with this config: reusing it")
            repo.add_compiled(name, version, prepared.compiled)  # from this compiler, for the next load
        else:
            version = repo.add(prepared.config, prepared.model_bytes, prepared.compiled)
    except OSError as exc:
        console.print(f"[red]deploy failed:[/red] cannot write to {escape(str(args.repo))}: "
                      f"{escape(exc.strerror or str(exc))}")
        return 1
    if written:
        console.print(f"wrote {name} version {version} to {args.repo}")
    if remote:
        import grpc

        try:
            client.load(name)
        except grpc.RpcError as exc:
            if written:  # the repository as it was before this deploy
                repo.remove_version(name, version)
                for folder in reversed(new_dirs):
                    folder.rmdir()
            console.print(f"[red]server at {args.server} refused the model:[/red] {escape(exc.details() or '')}")
            return 1
        console.print(f"loaded into the server at {args.server}")
        return 0
    return _serve_foreground(server_config)


def cmd_start(args) -> int:
    if args.model_dir is not None:
        return _start_model_dir(args)
    args.repo = args.repo or DEFAULT_REPO
    if not args.repo.is_dir():
        print(f"no model repository at {args.repo}; `serve deploy` makes one", file=sys.stderr)
        return 1
    return _serve_foreground(_server_config(args, tuple(args.model) if args.model else None))


def _start_model_dir(args) -> int:
    import shutil

    from backends import BackendUnavailable, ModelLoadFailed
    from serve.errors import ServeError
    from serve.modeldir import serve_model_dir

    if not args.model_name:
        print("--model-dir needs --model-name", file=sys.stderr)
        return 2
    try:
        served = serve_model_dir(args.model_dir, args.model_name, args.repo, backend=args.backend,
                                 precision=args.precision, backend_options=_options(args.option))
    except (ServeError, BackendUnavailable, ModelLoadFailed, ValueError) as exc:
        print(f"cannot serve {args.model_dir}: {exc}", file=sys.stderr)
        return 1
    args.repo = served.repo
    try:
        return _serve_foreground(_server_config(args, (served.model,)))
    finally:
        if served.temporary:
            shutil.rmtree(served.repo, ignore_errors=True)
