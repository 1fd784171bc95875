"""What every client command shares: the connection flags, running a command's coroutine
with a client, turning every failure into one line, and the plain-text output (tables, ages).

Imports only the standard library at the top: the ``hodei`` command imports this module to
build its parser for any subcommand. The client (httpx) and trio come in when a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._client import ApiError, HodeiClient

__all__ = [
    "DEFAULT_SERVER",
    "Body",
    "UsageError",
    "add_connection_flags",
    "age",
    "print_json",
    "print_table",
    "run_with_client",
    "when",
]

DEFAULT_SERVER = "http://127.0.0.1:8080"

#: A command's work: given a connected client and the parsed flags, returns the exit status.
Body = Callable[["HodeiClient", argparse.Namespace], Awaitable[int]]


class UsageError(Exception):
    """A mistake in the command line that argparse cannot see (exit status 2)."""


def add_connection_flags(parser: argparse.ArgumentParser, *, nested: bool = False) -> None:
    """Add ``--server``, ``--token`` and ``--json``.

    Args:
        parser: the command's parser.
        nested: the parser is a sub-subcommand's whose parent has the flags too; its defaults
            are left out, or they would overwrite what was given before the sub-subcommand
            (``hodei jobs --json list``).
    """
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if nested else {}
    parser.add_argument(
        "--server",
        metavar="URL",
        help=f"the server's URL (default: HODEI_SERVER, else {DEFAULT_SERVER})",
        **default,
    )
    parser.add_argument(
        "--token", metavar="T", help="a tenant's API token (default: HODEI_TOKEN)", **default
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the server's JSON instead of text",
        **({"default": argparse.SUPPRESS} if nested else {"default": False}),
    )


def _server_url(args: argparse.Namespace) -> str:
    server: str = args.server or os.environ.get("HODEI_SERVER") or DEFAULT_SERVER
    if "://" not in server:
        server = "http://" + server  # HODEI_SERVER=build-box:8080 means what it says
    scheme = server.partition("://")[0].lower()
    if scheme not in ("http", "https") or server.endswith("://"):
        raise UsageError(f"--server wants a URL such as {DEFAULT_SERVER}, not {server!r}")
    return server.rstrip("/")


def run_with_client(args: argparse.Namespace, body: Body) -> int:
    """Run ``body`` with a client of the server the flags name; returns its exit status, or
    the status of the failure, after one line on standard error about it."""
    # imported here, not above: see the module's docstring
    import trio  # noqa: PLC0415

    from .._client import HodeiClient  # noqa: PLC0415

    token: str | None = args.token or os.environ.get("HODEI_TOKEN") or None
    try:
        server = _server_url(args)

        async def main() -> int:
            async with HodeiClient(server, token) as client:
                return await body(client, args)

        return trio.run(main)
    except BaseException as exc:  # sorted out by _report, which re-raises the unforeseen
        return _report(exc, token is not None)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _report(exc: BaseException, has_token: bool) -> int:
    """Say what went wrong in one line (a refused document: one more line per problem);
    returns the exit status. Anything unforeseen is a bug, and goes on as a traceback."""
    from .._client import ApiError, ServerUnreachable  # noqa: PLC0415

    leaves = _leaves(exc)
    # Ctrl-C, also when it arrived inside a task group of the network library
    if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        return 130
    first = leaves[0]
    if isinstance(first, BrokenPipeError):  # `hodei logs JOB | head`: the reader has gone
        # point stdout at nothing, so that the interpreter's last flush has nowhere to fail
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    if isinstance(first, UsageError):
        _error(str(first))
        return 2
    if isinstance(first, ServerUnreachable):
        _error(str(first))
        return 1
    if isinstance(first, ApiError):
        return _report_api_error(first, has_token)
    raise exc


def _report_api_error(error: ApiError, has_token: bool) -> int:
    if error.status == 401:
        if has_token:
            _error("the server refused the token (set --token or HODEI_TOKEN)")
        else:
            _error("the server wants a token (set --token or HODEI_TOKEN)")
        return 1
    message = error.message
    if error.retry_after_s is not None and error.status == 429:
        message += f" (retry in {error.retry_after_s:g} s)"
    _error(message)
    for problem in error.details:  # every problem, so that one round of fixes is enough
        where = f"{problem.path}: " if problem.path else ""
        print(f"  {where}{problem.message}", file=sys.stderr)
    # a refused request is the user's to fix, like a bad flag; anything else is a failure
    return 2 if error.status == 400 else 1


def _error(message: str) -> None:
    # one line, whatever the server sent: a multi-line message would look like several errors
    print("hodei: " + " ".join(message.split()), file=sys.stderr)


# -- output -----------------------------------------------------------------------------------


def print_json(data: Any, *, compact: bool = False) -> None:
    """Print ``data`` as JSON: indented, or on one line (one event of a stream per line)."""
    if compact:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    else:
        text = json.dumps(data, indent=2, ensure_ascii=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def print_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Print rows under a header, each column as wide as its widest cell."""
    table = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        sys.stdout.write(line.rstrip() + "\n")
    sys.stdout.flush()


def age(epoch_s: float | None, now: float | None = None) -> str:
    """How long ago ``epoch_s`` was, short (``45s``, ``12m``, ``3h``, ``2d``); ``-`` for
    never."""
    if not epoch_s:
        return "-"
    # the server's clock may be ahead of ours: never show a negative age
    seconds = max(0, int((time.time() if now is None else now) - epoch_s))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def when(epoch_s: float | None) -> str:
    """A moment as local time and age (``2025-01-02 10:11:12 (5m ago)``); ``-`` for never."""
    if not epoch_s:
        return "-"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch_s))
    return f"{stamp} ({age(epoch_s)} ago)"
