"""The ``hodei`` command: one entry point, each subcommand a few lines over the packages.

Subcommands of other packages (``hodei server`` from hodei_http, ``hodei agent`` from
hodei_agent) plug in through the ``hodei.commands`` entry point group, so this package never
imports the ones above it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from hodei_core.errors import HodeiError

from . import _db, _run

__all__ = ["main"]

# A subcommand: adds its flags to a parser and returns the function to run with the result.
Command = Callable[[argparse.ArgumentParser], Callable[[argparse.Namespace], int]]

_BUILTIN: dict[str, tuple[str, Command]] = {
    "db": ("manage the schema of a SQL store", _db.command),
    "run": ("run a pipeline file locally on the embedded engine", _run.command),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hodei", description="Hodei Pipelines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands = dict(_BUILTIN)
    for entry in entry_points(group="hodei.commands"):
        # an entry point names a module with HELP and command(parser); keep that module light
        module = entry.load()
        commands.setdefault(entry.name, (module.HELP, module.command))
    for name, (help_text, setup) in sorted(commands.items()):
        child = sub.add_parser(name, help=help_text, description=help_text)
        child.set_defaults(handler=setup(child))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hodei`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except HodeiError as exc:
        print(f"hodei: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
