"""Server-Sent Events: a job's log as it is produced, across attempts, then its end."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio
import trio.testing
from starlette.applications import Starlette

from hodei_core import Hodei, LogChunk, Outcome, Stream
from hodei_http._sse import parse_last_event_id

from .conftest import ACME, Register


def _events(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        if not block.strip() or block.startswith(":"):
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append({**fields, "data": json.loads(fields["data"])})
    return events


async def _job_with_two_attempts(hodei: Hodei, acme: httpx.AsyncClient, worker_id: str) -> str:
    job_id: str = (await acme.post("/api/v1/jobs", json={"script": "x", "retries": 1})).json()["id"]
    for attempt, exit_code in ((1, 1), (2, 0)):
        await hodei.scheduler.schedule_once()
        await hodei.orchestrator.start(worker_id, job_id, attempt)
        chunks = [
            LogChunk(0, Stream.STDOUT, f"a{attempt}\n", 1.0),
            LogChunk(1, Stream.STDERR, f"b{attempt}\n", 2.0),
        ]
        await hodei.orchestrator.finish(worker_id, job_id, attempt, Outcome(exit_code), chunks)
    return job_id


async def test_stream_of_a_finished_job(
    acme: httpx.AsyncClient, hodei: Hodei, register: Register
) -> None:
    worker_id, _ = await register()
    job_id = await _job_with_two_attempts(hodei, acme, worker_id)
    url = f"/api/v1/jobs/{job_id}/logs/stream"
    response = await acme.get(url, params={"attempt": 1})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    events = _events(response.text)
    assert [(e["event"], e.get("id")) for e in events] == [
        ("log", "1:0"), ("log", "1:1"), ("attempt", None), ("log", "2:0"), ("log", "2:1"),
        ("end", None),
    ]  # fmt: skip
    assert events[1]["data"] == {
        "attempt": 1,
        "seq": 1,
        "stream": "stderr",
        "data": "b1\n",
        "ts": 2.0,
    }
    assert (events[-1]["data"]["state"], events[-1]["data"]["attempt"]) == ("succeeded", 2)

    # by default the current attempt; resume after the last event seen, or from an offset
    current = _events((await acme.get(url)).text)
    assert [e.get("id") for e in current] == ["2:0", "2:1", None]
    resumed = _events((await acme.get(url, headers={"Last-Event-ID": "1:1"})).text)
    assert [e.get("id") for e in resumed] == [None, "2:0", "2:1", None]
    offset = _events((await acme.get(url, params={"offset": 1})).text)
    assert [e.get("id") for e in offset] == ["2:1", None]
    # an attempt past the job's own is the job's current one
    later = _events((await acme.get(url, params={"attempt": 9})).text)
    assert [e.get("id") for e in later] == ["2:0", "2:1", None]


def _stream_scope(job_id: str) -> dict[str, Any]:
    """The ASGI scope of a stream request, for driving the app without a client (httpx's ASGI
    transport hands a body over only once it is complete)."""
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": f"/api/v1/jobs/{job_id}/logs/stream", "raw_path": b"",
        "query_string": b"", "root_path": "", "server": ("t", 80), "client": ("c", 1),
        "headers": [(b"authorization", f"Bearer {ACME}".encode())],
    }  # fmt: skip


def test_last_event_id_parsing() -> None:
    assert parse_last_event_id("3:41") == (3, 42)
    for value in (None, "", "41", "a:b", "1:-1", "1:2:3", "9" * 50 + ":1"):
        assert parse_last_event_id(value) is None, value


async def test_live_stream_delivers_each_chunk_as_it_arrives(
    app: Starlette, hodei: Hodei, acme: httpx.AsyncClient, register: Register
) -> None:
    worker_id, _ = await register()
    job_id = (await acme.post("/api/v1/jobs", json={"script": "x"})).json()["id"]
    await hodei.scheduler.schedule_once()
    await hodei.orchestrator.start(worker_id, job_id, 1)

    sent, received = trio.open_memory_channel[dict[str, Any]](100)
    disconnect = trio.Event()

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    scope = _stream_scope(job_id)

    async def next_event() -> dict[str, Any]:
        with trio.fail_after(2):
            while True:
                message = await received.receive()
                body = message.get("body", b"").decode()
                if body.startswith("event:"):
                    return _events(body)[0]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, scope, receive, sent.send)
        start = await received.receive()
        assert start["type"] == "http.response.start" and start["status"] == 200
        for seq in range(3):
            chunk = LogChunk(seq, Stream.STDOUT, f"line {seq}\n", 0.0)
            await hodei.orchestrator.append_logs(worker_id, job_id, 1, [chunk])
            event = await next_event()
            assert (event["event"], event["id"], event["data"]["data"]) == (
                "log", f"1:{seq}", f"line {seq}\n",
            )  # fmt: skip
        await hodei.orchestrator.finish(worker_id, job_id, 1, Outcome(0))
        end = await next_event()
        assert (end["event"], end["data"]["state"]) == ("end", "succeeded")
        with trio.fail_after(2):
            last = await received.receive()
        assert last == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_a_client_that_leaves_ends_the_stream(
    app: Starlette, hodei: Hodei, acme: httpx.AsyncClient
) -> None:
    job_id = (await acme.post("/api/v1/jobs", json={"script": "x"})).json()["id"]
    disconnect = trio.Event()
    sent, received = trio.open_memory_channel[dict[str, Any]](100)

    async def receive() -> dict[str, Any]:
        await disconnect.wait()
        return {"type": "http.disconnect"}

    scope = _stream_scope(job_id)
    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app, scope, receive, sent.send)
            assert (await received.receive())["status"] == 200
            await trio.testing.wait_all_tasks_blocked()
            disconnect.set()  # the app returns by itself: the nursery can close


async def test_keep_alive_comments(
    autojump_clock: trio.testing.MockClock, app: Starlette, acme: httpx.AsyncClient
) -> None:
    job_id = (await acme.post("/api/v1/jobs", json={"script": "x"})).json()["id"]
    sent, received = trio.open_memory_channel[dict[str, Any]](100)
    scope = _stream_scope(job_id)

    async def receive() -> dict[str, Any]:
        await trio.sleep_forever()
        raise AssertionError

    async with trio.open_nursery() as nursery:
        nursery.start_soon(app, scope, receive, sent.send)
        await received.receive()
        start = trio.current_time()
        assert (await received.receive())["body"] == b": keep-alive\n\n"
        assert 14 < trio.current_time() - start < 16
        nursery.cancel_scope.cancel()
