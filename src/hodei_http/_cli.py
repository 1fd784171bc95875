"""``hodei server``: plugs into the ``hodei`` command through the ``hodei.commands`` entry point.

This module stays light (argparse only): the ``hodei`` command loads it for every subcommand,
so the server's libraries are imported only when the server runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

__all__ = ["HELP", "command"]

HELP = "serve the HTTP API for users and agents"


def command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Declare ``hodei server``'s flags; return what runs it."""
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1; HODEI_HOST)")
    parser.add_argument("--port", type=int, help="TCP port (default 8080; HODEI_PORT)")
    parser.add_argument(
        "--store", help="store URL (default sqlite:///./hodei.db; HODEI_STORE)", metavar="URL"
    )
    parser.add_argument("--bus", help="event bus URL (default memory://; HODEI_BUS)", metavar="URL")
    parser.add_argument("--config", help="TOML configuration file (HODEI_CONFIG)", metavar="FILE")

    def run(args: argparse.Namespace) -> int:
        return run_server(vars(args), dict(os.environ))

    return run


def run_server(flags: dict[str, object], environ: dict[str, str]) -> int:
    """Read the settings and serve until interrupted; returns the exit status (2: unusable
    settings, 1: the server could not start)."""
    # imported here, not above: see the module's docstring
    import trio  # noqa: PLC0415

    from hodei_core.errors import HodeiError  # noqa: PLC0415

    from ._serve import collector_tuned_for_serving, serve  # noqa: PLC0415
    from ._settings import SettingsError, load_settings  # noqa: PLC0415

    try:
        settings = load_settings(flags, environ)
    except SettingsError as exc:
        print(f"hodei server: {exc}", file=sys.stderr)
        return 2
    status = 0
    try:
        with collector_tuned_for_serving():
            trio.run(serve, settings)
    except* HodeiError as group:  # an unknown store or bus scheme, a missing driver
        print(f"hodei server: {_first(group)}", file=sys.stderr)
        status = 2
    except* OSError as group:  # the address is taken, or not ours
        print(f"hodei server: cannot listen on {settings.url}: {_first(group)}", file=sys.stderr)
        status = 1
    except* KeyboardInterrupt:  # before the signal handlers were in place
        status = 130
    return status


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
