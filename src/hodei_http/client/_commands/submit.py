"""``hodei submit [flags] -- CMD ARGS…`` (or ``--script TEXT``): submit a job; print its id; with
``--wait``, follow its log and exit with the job's status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._common import UsageError, add_connection_flags, print_json, run_with_client

if TYPE_CHECKING:
    from .._client import HodeiClient

__all__ = ["HELP", "command"]

HELP = "submit a job to a Hodei server"


def command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Declare ``hodei submit``'s flags; return what runs it."""
    parser.epilog = "example: hodei submit --name build --wait -- make -j4 all"
    add_connection_flags(parser)
    parser.add_argument("--name", default="", help="the job's name")
    parser.add_argument("--script", metavar="TEXT", help="a shell script to run (sh -c TEXT)")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="L",
        help="a label the worker must have (repeatable)",
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="K=V", help="an environment variable"
    )
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="K=V",
        help="an environment variable masked in the log",
    )
    parser.add_argument("--timeout", type=float, metavar="S", help="seconds the job may run")
    parser.add_argument("--retries", type=int, metavar="N", help="attempts after a failure")
    parser.add_argument("--priority", type=int, metavar="N", help="higher runs first")
    parser.add_argument(
        "--wait",
        action="store_true",
        help="follow the job's log until it ends; exit with its exit code",
    )
    # everything from the command on is the command's, options too (`hodei submit ls -l`),
    # as with `docker run`; `--` before it is allowed, and needed if it starts with a dash
    parser.add_argument(
        "argv", nargs=argparse.REMAINDER, metavar="CMD ARGS", help="the command to run"
    )

    def run(args: argparse.Namespace) -> int:
        return run_with_client(args, _submit)

    return run


def _pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} wants KEY=VALUE, not {value!r}")
        pairs[key] = text
    return pairs


def job_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The job spec the flags describe (only what was given: the server has the defaults).

    Raises:
        UsageError: no command or script, or both; a malformed ``--env`` or ``--secret``.
    """
    argv = list(args.argv)
    if argv[:1] == ["--"]:  # a remainder keeps the `--` that announced it
        argv = argv[1:]
    if bool(argv) == (args.script is not None):
        raise UsageError("give a command after -- or --script TEXT (one of them)")
    spec: dict[str, Any] = {"command": argv} if argv else {"script": args.script}
    optional = {
        "name": args.name or None,
        "labels": list(args.label) or None,
        "env": _pairs(args.env, "--env") or None,
        "secrets": _pairs(args.secret, "--secret") or None,
        "timeout_s": args.timeout,
        "retries": args.retries,
        "priority": args.priority,
    }
    spec.update({key: value for key, value in optional.items() if value is not None})
    return spec


async def _submit(client: HodeiClient, args: argparse.Namespace) -> int:
    spec = job_spec(args)
    job = await client.submit_job(spec)
    if args.json:
        print_json(job, compact=args.wait)  # with --wait, a line of JSON like each event's
    else:
        print(job["id"], flush=True)
    if not args.wait:
        return 0
    from ._follow import exit_status, follow_job, print_event  # noqa: PLC0415

    ended = await follow_job(client, job["id"], lambda e: print_event(e, as_json=args.json))
    if not args.json and ended.get("state") != "succeeded":
        sys.stdout.flush()
        print(f"hodei: job {job['id']} {_how(ended)}", file=sys.stderr)
    return exit_status(ended)


def _how(job: dict[str, Any]) -> str:
    """How a job that did not succeed ended, in a few words."""
    how = str(job.get("state"))
    if job.get("exit_code") is not None:
        how += f" with exit code {job['exit_code']}"
    elif job.get("failure"):
        how += f" ({job['failure']})"
    return how
