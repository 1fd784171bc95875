"""The SSE parser, and the log follower resuming a stream that broke (over a fake transport,
on trio's mock clock: the follower's pauses between tries take no time)."""

from __future__ import annotations

import json

import httpx
import pytest

from hodei_http.client import HodeiClient, ServerUnreachable, SseEvent, SseParser
from hodei_http.client._commands._follow import exit_status, follow_job


def parse(text: str) -> list[SseEvent]:
    parser = SseParser()
    events = [parser.feed(line) for line in text.split("\n")]
    return [event for event in events if event is not None]


def test_fields_comments_and_blank_lines() -> None:
    text = (
        ": keep-alive\n\n"
        'event: log\nid: 1:0\ndata: {"a": 1}\n\n'
        "data:no space\ndata:  two spaces\n\n"  # one space after the colon is syntax
        "event: attempt\ndata: {}\n\n"
        "event: nothing\n\n"  # no data: no event
        "id: 2:0\n\n"
        "data: x\nretry: 10\nunknown: y\n\n"
        "data: cut off by the stream's end"
    )
    assert parse(text) == [
        SseEvent("log", '{"a": 1}', "1:0"),
        SseEvent("message", "no space\n two spaces", "1:0"),  # the id carries over
        SseEvent("attempt", "{}", "1:0"),
        SseEvent("message", "x", "2:0"),
    ]
    assert parse('event: log\ndata: {"a": [1]}\n\n')[0].json() == {"a": [1]}


def test_an_id_with_nul_is_ignored_and_a_field_without_colon_is_empty() -> None:
    parser = SseParser()
    for line in ["id: 1:0", "id: bad\0id", "data", ""]:
        event = parser.feed(line)
    assert event == SseEvent("message", "", "1:0")
    assert parser.last_id == "1:0"


def _sse(*events: tuple[str, str | None, object]) -> bytes:
    out = ""
    for name, event_id, data in events:
        out += f"event: {name}\n" + (f"id: {event_id}\n" if event_id else "")
        out += f"data: {json.dumps(data)}\n\n"
    return out.encode()


async def test_a_broken_stream_is_resumed_after_the_last_event(autojump_clock: object) -> None:
    asked: list[str | None] = []
    chunk = {"attempt": 1, "seq": 0, "stream": "stdout", "data": "a\n"}
    answers: list[httpx.Response | Exception] = [
        httpx.Response(200, content=_sse(("log", "1:0", chunk))),  # ends before the end
        httpx.ConnectError("refused"),  # the server is restarting
        httpx.Response(
            200,
            content=_sse(
                ("log", "1:1", {**chunk, "seq": 1, "data": "b\n"}),
                ("end", None, {"id": "job-1", "state": "failed", "exit_code": 7}),
            ),
        ),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("last-event-id"))
        answer = answers[len(asked) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    seen: list[str] = []
    async with HodeiClient("http://hodei.test", "t", transport=httpx.MockTransport(handler)) as c:
        job = await follow_job(c, "job-1", lambda e: seen.append(f"{e.event} {e.id}"))
    assert asked == [None, "1:0", "1:0"]
    assert seen == ["log 1:0", "log 1:1", "end 1:1"]
    assert exit_status(job) == 7


async def test_no_server_at_all_is_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("[Errno 111] Connection refused")

    async with HodeiClient("http://hodei.test", transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(ServerUnreachable) as caught:
            await follow_job(c, "job-1", lambda e: None)
    assert str(caught.value).startswith("cannot reach the server at http://hodei.test: ")
    assert calls == 1


@pytest.mark.parametrize(
    ("job", "status"),
    [
        ({"state": "succeeded", "exit_code": 0}, 0),
        ({"state": "failed", "exit_code": 4}, 4),
        ({"state": "failed", "exit_code": None, "failure": "worker_lost"}, 1),
        ({"state": "failed", "exit_code": -9}, 1),  # killed by a signal
        ({"state": "failed", "exit_code": 300}, 1),  # not an exit status of this system
        ({"state": "cancelled", "exit_code": 0}, 1),
    ],
)
def test_exit_status(job: dict[str, object], status: int) -> None:
    assert exit_status(job) == status
