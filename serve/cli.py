"""The ``serve`` command line.

Each subcommand lives in a module with a ``register(subparsers)`` function that adds
its parser and sets ``func``; heavy imports happen inside the command, not here, so
``serve --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# Modules contributing subcommands, in the order ``serve --help`` lists them.
COMMAND_MODULES = (
    "serve.commands",
    "serve.compile_command",
    "serve.client_commands",
    "models.convert.cli",
    "models.quantize.cli",
)

# Subcommands that run models set ``needs_runtime``; the runtime is an extra (pyproject.toml).
RUNTIME_HINT = "pip install 'bwserve[cpu]', or 'bwserve[gpu]' on a machine with an NVIDIA GPU"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="serve",
        description="bwserve: batch-1 DNN inference over KServe v2 gRPC on CPU, GPU or a simulated FPGA.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for command in sub.choices.values():  # so that a wrong flag is answered with its command's usage
        command.set_defaults(command_parser=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would print the top-level usage; the command's is the one that helps
        getattr(args, "command_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if getattr(args, "needs_runtime", False) and importlib.util.find_spec("onnxruntime") is None:
        print(f"serve {args.command}: onnxruntime is not installed; {RUNTIME_HINT}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
