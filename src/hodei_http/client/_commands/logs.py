"""``hodei logs [-f] JOB``: print a job's log (its output on stdout, its errors on stderr);
``-f`` follows it live until the job ends, then exits with the job's status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._common import add_connection_flags, print_json, run_with_client

if TYPE_CHECKING:
    from .._client import HodeiClient

__all__ = ["HELP", "command"]

HELP = "print a job's log, or follow it live (-f)"

_PAGE = 10_000  # chunks per request: the most the server gives


def command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Declare ``hodei logs``' flags; return what runs it."""
    add_connection_flags(parser)
    parser.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="follow the log until the job ends; exit 0 if it succeeded, else its exit code",
    )
    parser.add_argument(
        "--attempt", type=int, metavar="N", help="the log of this attempt (default: the last)"
    )
    parser.add_argument("job", metavar="JOB", help="the job's id")

    def run(args: argparse.Namespace) -> int:
        return run_with_client(args, _follow if args.follow else _print)

    return run


async def _print(client: HodeiClient, args: argparse.Namespace) -> int:
    """The log so far, every page of it."""
    offset = 0
    document: dict[str, Any] | None = None
    chunks: list[dict[str, Any]] = []
    while True:
        page = await client.read_logs(args.job, attempt=args.attempt, offset=offset, limit=_PAGE)
        document = page
        if args.json:
            chunks.extend(page.get("chunks", []))
        else:
            for chunk in page.get("chunks", []):
                out = sys.stderr if chunk.get("stream") == "stderr" else sys.stdout
                out.write(str(chunk.get("data", "")))
        if len(page.get("chunks", [])) < _PAGE:
            break
        offset = int(page["next_offset"])
    if args.json:
        print_json({**document, "chunks": chunks})
    sys.stdout.flush()
    return 0


async def _follow(client: HodeiClient, args: argparse.Namespace) -> int:
    """The log as it comes, until the job ends."""
    from ._follow import exit_status, follow_job, print_event  # noqa: PLC0415

    ended = await follow_job(
        client, args.job, lambda e: print_event(e, as_json=args.json), attempt=args.attempt
    )
    return exit_status(ended)
