"""``serve compile``: the fpga compile as a stage of its own, its artefact written into the version.

``serve deploy --backend fpga`` writes the artefact already; this command writes it for
a version that lacks it (deployed before the compiler changed, or over a server) or
under other options, and prints what the program is: instructions by kind, cycles,
utilisation, pinned bytes (per device over several).
"""
from __future__ import annotations

import sys

from serve.client_commands import add_repo


def register(sub) -> None:
    p = sub.add_parser("compile", help="compile a deployed model for the fpga, write the artefact into its version "
                                       "folder and print the program's summary")
    p.add_argument("model", metavar="MODEL", help="a model in the repository")
    p.add_argument("--version", type=int, help="its version (default: the newest)")
    p.add_argument("--backend", default="fpga", choices=["fpga"],
                   help="the device to compile for; only the fpga has a compile stage (cpu and gpu run the ONNX "
                        "model as it is)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="an fpga option over the version's own (see serve deploy); a server loading the version "
                        "with its config's options reads only the artefact compiled with those")
    add_repo(p)
    p.set_defaults(func=cmd_compile, needs_runtime=True)


def cmd_compile(args) -> int:
    from backends import BackendUnavailable, ModelLoadFailed, get_backend
    from backends.fpga.summary import lines, summary
    from serve.commands import _options
    from serve.config import MODEL_FILE
    from serve.errors import ServeError
    from serve.repository import ModelRepository

    def fail(why: str) -> int:
        print(f"serve compile: {why}", file=sys.stderr)
        return 1

    repo = ModelRepository(args.repo)
    try:
        versions = repo.versions(args.model)
    except ServeError as exc:  # a name that is no plain directory name
        return fail(str(exc))
    if not versions:
        known = ", ".join(repo.models()) or "none"
        return fail(f"no model {args.model!r} in {args.repo} (its models: {known})")
    version = versions[-1] if args.version is None else args.version
    if version not in versions:
        return fail(f"model {args.model!r} has no version {version} in {args.repo} (versions: "
                    f"{', '.join(map(str, versions))})")
    config = repo.read_config(args.model, version)
    options = {**config.backend_options, **_options(args.option)}
    folder = repo.version_dir(args.model, version)
    backend = get_backend(args.backend)(config.replace(backend_options=options, instances=1).spec(), 0)
    try:
        backend.load(folder / MODEL_FILE)
    except (ModelLoadFailed, BackendUnavailable) as exc:
        return fail(f"{args.model} version {version} does not compile for the {args.backend}: {exc}")
    try:
        written = backend.compiled_files()
        repo.add_compiled(args.model, version, written)
    except OSError as exc:
        return fail(f"cannot write into {folder}: {exc.strerror or exc}")
    finally:
        backend.close()
    print(f"{args.model} version {version}: wrote {', '.join(sorted(written))} in {folder}")
    if args.backend not in config.backends or options != config.backend_options:
        print(f"note: the server loads this version on {', '.join(config.backends)} with options "
              f"{config.backend_options or '{}'}, which this artefact is not for")
    for line in lines(summary(backend.compiled)):
        print(f"  {line}")
    return 0
