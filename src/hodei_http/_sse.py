"""Server-Sent Events: a job's log as it is produced, then its final state.

Each chunk is an ``event: log`` whose ``id`` is ``<attempt>:<seq>``; when the job is queued
again for a new attempt (a retry, a lost worker) an ``event: attempt`` announces it and the
stream goes on with that attempt's chunks; finally an ``event: end`` carries the job. A client
that reconnects with ``Last-Event-ID`` resumes after the last chunk it saw. Comment lines keep
idle connections open through proxies.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any

import trio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from hodei_core import Hodei, Job

from ._wire import chunk_json, job_json

__all__ = ["EventStream", "follow_job", "format_event", "parse_last_event_id"]

_KEEPALIVE_S = 15.0

#: Sends one event (already formatted); the producer of a stream gets one.
Emit = Callable[[bytes], Awaitable[None]]


def format_event(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One SSE event; ``data`` as one line of JSON (ASCII, so no line breaks inside)."""
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, ensure_ascii=True, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode("ascii")


def parse_last_event_id(value: str | None) -> tuple[int, int] | None:
    """``(attempt, next_seq)`` from a ``Last-Event-ID`` of ``<attempt>:<seq>``; None when it is
    absent or not one of ours (then the stream starts from the beginning)."""
    if not value:
        return None
    attempt, sep, seq = value.partition(":")
    if not sep or not attempt.isdigit() or not seq.isdigit() or len(value) > 40:
        return None
    return int(attempt), int(seq) + 1


async def follow_job(hodei: Hodei, job: Job, attempt: int, from_seq: int, emit: Emit) -> None:
    """Emit the job's chunks from ``(attempt, from_seq)`` on, across later attempts, as they
    arrive, then the ``end`` event with the job as it finished."""
    attempt = min(attempt, job.attempt)  # a later attempt than the job's is no attempt yet
    while True:
        chunks = hodei.follow_logs(job.id, attempt=attempt, from_seq=from_seq)
        async with aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                data = {"attempt": attempt, **chunk_json(chunk)}
                await emit(format_event("log", data, f"{attempt}:{chunk.seq}"))
                from_seq = chunk.seq + 1
        job = await hodei.get(job.id)
        if job.attempt > attempt:
            # follow_logs returns when the attempt it follows is over: go on with the next one
            attempt, from_seq = attempt + 1, 0
            await emit(format_event("attempt", {"attempt": attempt}))
        elif job.is_finished:
            break
    await emit(format_event("end", job_json(job)))


class EventStream(Response):
    """A ``text/event-stream`` response fed by ``produce(emit)``; it stops when the client goes
    away (a plain ASGI response with a nursery, so that trio owns every task)."""

    media_type = "text/event-stream"

    def __init__(self, produce: Callable[[Emit], Awaitable[None]]) -> None:
        super().__init__(
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            media_type=self.media_type,
        )
        # Starlette computed a Content-Length of 0 for the empty body: a stream has none
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._produce = produce

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lock = trio.Lock()  # the producer and the keep-alive task must not interleave

        async def emit(data: bytes) -> None:
            async with lock:
                await send({"type": "http.response.body", "body": data, "more_body": True})

        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        async with trio.open_nursery() as nursery:

            async def watch_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                nursery.cancel_scope.cancel()

            async def keep_alive() -> None:
                while True:
                    await trio.sleep(_KEEPALIVE_S)
                    await emit(b": keep-alive\n\n")

            nursery.start_soon(watch_disconnect)
            nursery.start_soon(keep_alive)
            await self._produce(emit)
            async with lock:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            nursery.cancel_scope.cancel()
