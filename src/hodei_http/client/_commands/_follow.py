"""Following work as it happens: a job's log through its event stream (``hodei logs -f``,
``hodei submit --wait``) and a run's steps (``hodei pipelines run --wait``).

Imported only when a command runs (it brings trio and the client).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import trio

from .._client import HodeiClient, JsonObject, ServerUnreachable
from .._sse import SseEvent
from ._common import print_json

__all__ = ["exit_status", "follow_job", "print_event", "watch_run"]

# A stream that breaks after it worked (a server restart, a proxy's idle timeout) is opened
# again from the last event seen, this many times in a row, waiting longer each time.
_RECONNECTS = 6
_RECONNECT_FIRST_S = 0.25
_RECONNECT_MAX_S = 5.0

# A run has no event stream: it is read again, more and more slowly, up to once a second.
_POLL_FIRST_S = 0.05
_POLL_MAX_S = 1.0
_RUN_ENDED = frozenset({"succeeded", "failed", "cancelled"})


async def follow_job(
    client: HodeiClient,
    job_id: str,
    on_event: Callable[[SseEvent], None],
    *,
    attempt: int | None = None,
) -> JsonObject:
    """Hand each event of the job's log stream to ``on_event`` (the ``end`` event too) until
    the job ends; returns the job as it ended.

    Raises:
        ApiError: the server refused the stream (no such job, a bad token).
        ServerUnreachable: no server at first, or none again after a few tries.
    """
    last_id: str | None = None
    opened = False  # the stream was open once: from then on, a break is worth resuming
    failures = 0  # breaks in a row without an event in between
    while True:
        ended: JsonObject | None = None
        try:
            stream = client.stream_logs(job_id, attempt=attempt, last_event_id=last_id)
            async with aclosing(stream) as events:
                # read to the stream's end, not only to `end`: the answer is then complete and
                # its connection goes back to the pool
                async for event in events:
                    opened, failures = True, 0
                    last_id = event.id or last_id
                    on_event(event)
                    if event.event == "end":
                        ended = event.json()
        except ServerUnreachable as exc:
            opened = opened or exc.connected
            if not opened or failures >= _RECONNECTS:
                raise
        if ended is not None:
            return ended
        if failures >= _RECONNECTS:
            raise ServerUnreachable(
                client.server, "the log stream keeps ending before the job", connected=True
            )
        # cut off before the end: resume after the last event seen
        await trio.sleep(min(_RECONNECT_FIRST_S * 2**failures, _RECONNECT_MAX_S))
        failures += 1


def print_event(event: SseEvent, *, as_json: bool) -> None:
    """Show an event of a log stream: a chunk's text on the stream it came from, a new attempt
    as a note on standard error; or every event as a line of JSON."""
    if as_json:
        data: Any = event.json()
        print_json({"event": event.event, "id": event.id, "data": data}, compact=True)
        return
    if event.event == "log":
        chunk = event.json()
        out = sys.stderr if chunk.get("stream") == "stderr" else sys.stdout
        out.write(str(chunk.get("data", "")))
        out.flush()
    elif event.event == "attempt":
        attempt = event.json().get("attempt")
        sys.stdout.flush()
        print(f"hodei: the job starts again: attempt {attempt}", file=sys.stderr)


def exit_status(job: JsonObject) -> int:
    """A finished job's status as an exit status: 0 if it succeeded, else its exit code if it
    has a failing one that fits, else 1."""
    if job.get("state") == "succeeded":
        return 0
    code = job.get("exit_code")
    if isinstance(code, int) and 0 < code < 256:
        return code
    return 1


async def watch_run(
    client: HodeiClient, run: JsonObject, on_step: Callable[[dict[str, Any], float], None]
) -> JsonObject:
    """Call ``on_step(step, elapsed_s)`` for each step now and whenever its state changes,
    until the run ends; returns the run as it ended."""
    start = trio.current_time()
    seen: dict[str, str] = {}
    delay = _POLL_FIRST_S
    while True:
        for step in run.get("steps", []):
            if seen.get(step["name"]) != step["state"]:
                seen[step["name"]] = step["state"]
                on_step(step, trio.current_time() - start)
        if run.get("state") in _RUN_ENDED:
            return run
        await trio.sleep(delay)
        delay = min(delay * 1.5, _POLL_MAX_S)
        run = await client.get_run(str(run["id"]))
