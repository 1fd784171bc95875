"""``hodei agent``: plugs into the ``hodei`` command through the ``hodei.commands`` entry point.

This module stays light (argparse only): the ``hodei`` command loads it for every subcommand,
so the agent's libraries (httpx, trio) are imported only when the agent runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping

__all__ = ["HELP", "command", "run_agent_command"]

HELP = "run a worker agent: take jobs from a server and run them"

# exit statuses
_DRAINED, _FAILED, _BAD_SETTINGS, _STOPPED = 0, 1, 2, 130


def command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Declare ``hodei agent``'s flags; return what runs it."""
    add = parser.add_argument
    add("--server", metavar="URL", help="the server, e.g. http://hodei:8080 (HODEI_SERVER)")
    add(
        "--token",
        help="the agent registration token (HODEI_AGENT_TOKEN, better: a flag shows in ps)",
    )
    add("--name", help="the worker's name (HODEI_AGENT_NAME; default: the host name)")
    add("--labels", metavar="A,B", help="labels the worker offers (HODEI_AGENT_LABELS)")
    add("--slots", metavar="N", help="jobs to run at once (HODEI_AGENT_SLOTS; default 1)")
    add("--heartbeat", metavar="SECONDS", help="heartbeat interval (default: the server's pace)")
    add("--poll-wait", metavar="SECONDS", help="long-poll wait (default: the server's)")

    def run(args: argparse.Namespace) -> int:
        return run_agent_command(vars(args), dict(os.environ))

    return run


def run_agent_command(flags: Mapping[str, object], environ: Mapping[str, str]) -> int:
    """Read the settings and run the agent; returns the exit status: 0 once drained (a first
    SIGTERM or SIGINT, or the server's drain), 130 when a second signal stopped it at once,
    2 for unusable settings or a refused token, 1 for any other failure. Every error is one
    line on standard error."""
    # imported here, not above: see the module's docstring
    import trio  # noqa: PLC0415

    from hodei_core.errors import HodeiError  # noqa: PLC0415

    from ._agent import run_agent  # noqa: PLC0415
    from ._settings import SettingsError, load_agent_settings  # noqa: PLC0415

    try:
        settings = load_agent_settings(flags, environ)
    except SettingsError as exc:
        print(f"hodei agent: {exc}", file=sys.stderr)
        return _BAD_SETTINGS
    _log_to_stderr()
    try:
        drained = trio.run(run_agent, settings)
    except KeyboardInterrupt:  # before the signal handlers were in place
        return _STOPPED
    except BaseException as exc:  # one line for anything, never a traceback
        error = _first(exc)
        if isinstance(error, KeyboardInterrupt):
            return _STOPPED
        if isinstance(error, HodeiError):
            print(f"hodei agent: {error}", file=sys.stderr)
            return _BAD_SETTINGS
        if isinstance(error, Exception):
            print(f"hodei agent: unexpected error: {error!r}", file=sys.stderr)
            return _FAILED
        raise  # SystemExit and the like
    return _DRAINED if drained else _STOPPED


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s hodei agent: %(message)s"))
    logging.getLogger().addHandler(handler)
    # the agent's own news; httpx would log every request at INFO
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("hodei").setLevel(logging.INFO)


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
