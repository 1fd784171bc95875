"""``hodei pipelines create|list|show|delete|run``: the tenant's pipelines on a Hodei server."""

from __future__ import annotations

import argparse
import sys
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
from .jobs import describe_spec

if TYPE_CHECKING:
    from .._client import HodeiClient

__all__ = ["HELP", "command"]

HELP = "create, list, show, delete or run pipelines"

_MAX_PAGE = 1000  # the most the server gives in one page


def command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Declare ``hodei pipelines``' sub-commands and flags; return what runs them."""
    add_connection_flags(parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        child = actions.add_parser(name, help=help_text, description=help_text)
        add_connection_flags(child, nested=True)
        return child

    create = action("create", "create a pipeline from a file (YAML or JSON; - for stdin)")
    create.add_argument("file", metavar="FILE")
    action("list", "list pipelines, oldest first")
    for name, help_text in (("show", "show a pipeline"), ("delete", "delete a pipeline")):
        action(name, help_text).add_argument("id", metavar="ID")
    run_parser = action("run", "run a pipeline; print the run's id")
    run_parser.add_argument("id", metavar="ID")
    run_parser.add_argument(
        "--wait",
        action="store_true",
        help="show the steps' states until the run ends; exit 0 if it succeeded, else 1",
    )
    bodies = {"create": _create, "list": _list, "show": _show, "delete": _delete, "run": _run}

    def run(args: argparse.Namespace) -> int:
        return run_with_client(args, bodies[args.action])

    return run


def _read(path: str) -> tuple[bytes, str]:
    """The file's bytes and their media type (JSON by its extension, else YAML)."""
    try:
        if path == "-":
            return sys.stdin.buffer.read(), "application/yaml"
        with open(path, "rb") as file:
            body = file.read()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    kind = "application/json" if path.lower().endswith(".json") else "application/yaml"
    return body, kind


async def _create(client: HodeiClient, args: argparse.Namespace) -> int:
    body, kind = _read(args.file)
    pipeline = await client.create_pipeline(body, content_type=kind)
    if args.json:
        print_json(pipeline)
    else:
        print(pipeline["id"])
    return 0


async def _list(client: HodeiClient, args: argparse.Namespace) -> int:
    pipelines: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        page = await client.list_pipelines(offset=offset, limit=_MAX_PAGE)
        pipelines.extend(page.items)
        offset = page.next_offset
    if args.json:
        print_json({"items": pipelines, "next_offset": None})
        return 0
    rows = [
        (p["id"], str(p.get("name", "")), str(len(p.get("steps", []))), age(p.get("created_at")))
        for p in pipelines
    ]
    print_table(("ID", "NAME", "STEPS", "AGE"), rows)
    return 0


async def _show(client: HodeiClient, args: argparse.Namespace) -> int:
    pipeline = await client.get_pipeline(args.id)
    if args.json:
        print_json(pipeline)
        return 0
    print(f"id:      {pipeline['id']}")
    print(f"name:    {pipeline.get('name', '')}")
    print(f"created: {when(pipeline.get('created_at'))}")
    print()
    rows = [
        (str(step["name"]), ", ".join(step.get("depends_on", [])) or "-", describe_spec(step))
        for step in pipeline.get("steps", [])
    ]
    print_table(("STEP", "DEPENDS ON", "RUNS"), rows)
    return 0


async def _delete(client: HodeiClient, args: argparse.Namespace) -> int:
    await client.delete_pipeline(args.id)
    if args.json:
        print_json({"id": args.id, "deleted": True})
    else:
        print(f"deleted {args.id}")
    return 0


async def _run(client: HodeiClient, args: argparse.Namespace) -> int:
    run = await client.start_run(args.id)
    if not args.wait:
        if args.json:
            print_json(run)
        else:
            print(run["id"])
        return 0
    from ._follow import watch_run  # noqa: PLC0415

    if not args.json:
        print(run["id"], flush=True)
    width = max((len(str(step["name"])) for step in run.get("steps", [])), default=4)

    def show(step: dict[str, Any], elapsed_s: float) -> None:
        if not args.json:
            print(f"{elapsed_s:7.1f}s  {step['name']:<{width}}  {step['state']}", flush=True)

    run = await watch_run(client, run, show)
    if args.json:
        print_json(run)
    else:
        print(f"run {run['id']} of {run.get('pipeline_name', args.id)}: {run.get('state')}")
    return 0 if run.get("state") == "succeeded" else 1
