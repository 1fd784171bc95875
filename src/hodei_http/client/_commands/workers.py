"""``hodei workers [list]``, ``hodei workers drain ID``: the fleet of a Hodei server."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._common import add_connection_flags, age, print_json, print_table, run_with_client

if TYPE_CHECKING:
    from .._client import HodeiClient

__all__ = ["HELP", "command"]

HELP = "list the workers, or drain one"

_MAX_PAGE = 1000  # the most the server gives in one page


def command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Declare ``hodei workers``' sub-commands and flags; return what runs them."""
    add_connection_flags(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser(
        "list", help="list the workers (what `hodei workers` does)", description="list workers"
    )
    drain = actions.add_parser(
        "drain",
        help="take no new jobs on a worker; it leaves when its jobs are done",
        description="drain a worker",
    )
    drain.add_argument("id", metavar="ID", help="the worker's id or name")
    for child in (listing, drain):
        add_connection_flags(child, nested=True)

    def run(args: argparse.Namespace) -> int:
        return run_with_client(args, _drain if args.action == "drain" else _list)

    return run


async def _all(client: HodeiClient) -> list[dict[str, Any]]:
    workers: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        page = await client.list_workers(offset=offset, limit=_MAX_PAGE)
        workers.extend(page.items)
        offset = page.next_offset
    return workers


def _slots(worker: dict[str, Any]) -> str:
    total = worker.get("capacity", {}).get("slots", "?")
    # the server's worker has no count of used slots (yet): show it when there is one
    used = worker.get("used_slots")
    return f"{used}/{total}" if used is not None else str(total)


async def _list(client: HodeiClient, args: argparse.Namespace) -> int:
    workers = await _all(client)
    if args.json:
        print_json({"items": workers, "next_offset": None})
        return 0
    rows = [
        (
            w["id"],
            str(w.get("name", "")),
            str(w.get("state")),
            ",".join(w.get("labels", [])) or "-",
            _slots(w),
            age(w.get("last_heartbeat")),
        )
        for w in workers
    ]
    print_table(("ID", "NAME", "STATE", "LABELS", "SLOTS", "LAST SEEN"), rows)
    return 0


async def _drain(client: HodeiClient, args: argparse.Namespace) -> int:
    from .._client import ApiError  # noqa: PLC0415

    try:
        worker = await client.drain_worker(args.id)
    except ApiError as exc:
        # people know their workers by name; ids are what the server knows them by
        if exc.status != 404:
            raise
        named = [w for w in await _all(client) if w.get("name") == args.id]
        if not named:
            raise
        worker = await client.drain_worker(named[0]["id"])
    if args.json:
        print_json(worker)
    else:
        print(f"{worker['id']} ({worker.get('name', '')}): {worker.get('state')}")
    return 0
