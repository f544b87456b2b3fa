"""The ``sv4d`` command: one module per sub-command, the shared flags in :mod:`.common`.

Each module has ``register(sub)`` (its flags and help) and a ``run`` function that checks the
input, calls the library and prints the result; the algorithms live outside the CLI. Errors the
user can fix (:class:`~sv4d.errors.Sv4dError`) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import Sv4dError
from . import curate, demo, evaluate, export, fit, generate, render, render_asset, run, train, verify

#: sub-command modules, in the order ``sv4d --help`` lists them
COMMANDS = (run, demo, verify, generate, train, fit, render, export, evaluate, render_asset, curate)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sv4d",
        description="Stable Video 4D 2.0: multi-view video generation, 4D fitting, training and evaluation.",
        epilog="Every command takes -q; those that compute take --device (default auto: the GPU when there is one). "
        "`sv4d COMMAND --help` explains each.",
    )
    p.add_argument("--version", action="version", version=f"sv4d {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except Sv4dError as e:
        print(f"sv4d: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sv4d: interrupted", file=sys.stderr)
        return 130
