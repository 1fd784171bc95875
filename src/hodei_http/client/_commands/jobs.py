"""``hodei jobs list|show|cancel``: the tenant's jobs on a Hodei server."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._common import (
    UsageError,
    add_connection_flags,
    age,
    print_json,
    print_table,
    run_with_client,
    when,
)

if TYPE_CHECKING:
    from .._client import HodeiClient

__all__ = ["HELP", "command", "describe_spec"]

HELP = "list, show or cancel jobs"

_MAX_PAGE = 1000  # the most the server gives in one page


def command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Declare ``hodei jobs``' sub-commands and flags; return what runs them."""
    add_connection_flags(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list jobs, oldest first", description="list jobs")
    listing.add_argument(
        "--state", action="append", default=[], metavar="S", help="only jobs in state S"
    )
    listing.add_argument("--run", metavar="R", help="only the jobs of run R")
    listing.add_argument("--worker", metavar="W", help="only the jobs on worker W (its id)")
    listing.add_argument("--limit", type=int, default=100, metavar="N", help="at most N jobs")
    show = actions.add_parser("show", help="show a job", description="show a job")
    show.add_argument("id", metavar="ID")
    cancel = actions.add_parser("cancel", help="cancel a job", description="cancel a job")
    cancel.add_argument("id", metavar="ID")
    for child in (listing, show, cancel):
        add_connection_flags(child, nested=True)
    bodies = {"list": _list, "show": _show, "cancel": _cancel}

    def run(args: argparse.Namespace) -> int:
        return run_with_client(args, bodies[args.action])

    return run


async def _list(client: HodeiClient, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError(f"--limit wants a positive number, not {args.limit}")
    states = [s.strip() for value in args.state for s in value.split(",") if s.strip()]
    jobs: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None and len(jobs) < args.limit:
        page = await client.list_jobs(
            states=states,
            run=args.run,
            worker=args.worker,
            offset=offset,
            limit=min(args.limit - len(jobs), _MAX_PAGE),
        )
        jobs.extend(page.items)
        offset = page.next_offset
    if args.json:
        print_json({"items": jobs, "next_offset": offset})
        return 0
    names = await _worker_names(client) if any(job.get("worker_id") for job in jobs) else {}
    rows = [
        (
            job["id"],
            "" if job.get("name") == job["id"] else str(job.get("name", "")),
            str(job.get("state")),
            str(job.get("attempt", "")),
            names.get(job.get("worker_id") or "", job.get("worker_id") or ""),
            _exit(job),
            age(job.get("created_at")),
        )
        for job in jobs
    ]
    print_table(("ID", "NAME", "STATE", "ATTEMPT", "WORKER", "EXIT", "AGE"), rows)
    return 0


async def _worker_names(client: HodeiClient) -> dict[str, str]:
    """Each worker's name by id: a name says more than an id in a table."""
    names: dict[str, str] = {}
    offset: int | None = 0
    while offset is not None:
        page = await client.list_workers(offset=offset, limit=_MAX_PAGE)
        names.update((w["id"], str(w.get("name") or w["id"])) for w in page.items)
        offset = page.next_offset
    return names


def _exit(job: dict[str, Any]) -> str:
    """The exit code, or why there is none (``worker_lost``); empty while the job runs."""
    if job.get("exit_code") is not None:
        return str(job["exit_code"])
    return str(job.get("failure") or "")


def describe_spec(spec: dict[str, Any]) -> str:
    """What a job runs, in one line: its command as a shell would take it, or its script."""
    if spec.get("command") is not None:
        return shlex.join(spec["command"])
    script = str(spec.get("script") or "")
    first, *rest = script.strip().splitlines() or [""]
    return f"sh -c {shlex.quote(first + (' …' if rest else ''))}"


async def _show(client: HodeiClient, args: argparse.Namespace) -> int:
    job = await client.get_job(args.id)
    if args.json:
        print_json(job)
        return 0
    spec = job.get("spec", {})
    state = str(job.get("state"))
    if job.get("failure"):
        state += f" ({job['failure']})"
    fields = [
        ("id", job["id"]),
        ("name", str(job.get("name", ""))),
        ("state", state),
        ("attempt", str(job.get("attempt", ""))),
        ("exit code", "-" if job.get("exit_code") is None else str(job["exit_code"])),
        ("worker", job.get("worker_id") or "-"),
        ("runs", describe_spec(spec)),
        ("labels", ", ".join(spec.get("labels", [])) or "-"),
        ("env", " ".join(f"{k}={v}" for k, v in spec.get("env", {}).items()) or "-"),
        ("secrets", ", ".join(spec.get("secrets", {})) or "-"),
        ("timeout", "-" if spec.get("timeout_s") is None else f"{spec['timeout_s']:g}s"),
        ("retries", str(spec.get("retries", 0))),
        ("run", f"{job['run_id']} (step {job.get('step')})" if job.get("run_id") else "-"),
        ("created", when(job.get("created_at"))),
        ("started", when(job.get("started_at"))),
        ("finished", when(job.get("finished_at"))),
    ]
    width = max(len(name) for name, _ in fields) + 1
    for name, value in fields:
        print(f"{name + ':':<{width}} {value}")
    return 0


async def _cancel(client: HodeiClient, args: argparse.Namespace) -> int:
    job = await client.cancel_job(args.id)
    if args.json:
        print_json(job)
    else:
        print(f"{job['id']}: {job.get('state')}")
    return 0
