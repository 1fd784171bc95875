"""``hodei db upgrade URL``: bring a SQL database to the latest schema ahead of time."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["command"]


def command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Declare ``hodei db``'s flags; return what runs it."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    upgrade = sub.add_parser("upgrade", help="apply every migration the database lacks")
    upgrade.add_argument("url", help="the store URL, e.g. sqlite:///hodei.db")

    def run(args: argparse.Namespace) -> int:
        from ..sql import upgrade  # noqa: PLC0415 - SQLAlchemy only for this command

        upgrade(args.url)
        print(f"hodei: {args.url.split('://')[0]} database is up to date")
        return 0

    return run
