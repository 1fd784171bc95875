"""Bad input is a 4xx with a message, never a 5xx: oversize, malformed, mistyped, unknown,
out of range. Failures of the backends are 503, and anything unforeseen a JSON 500."""

from __future__ import annotations

import logging

import httpx
import pytest
import trio
import trio.testing
from starlette.applications import Starlette

from hodei_backends import MemoryEventBus, MemoryStore
from hodei_core import Hodei, Job
from hodei_core.errors import StorageError
from hodei_core.ports import JobQuery
from hodei_http import create_app

from .conftest import ACME, AGENT, Register, auth, make_settings

JSON = {"Content-Type": "application/json"}


def _error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error: dict[str, object] = response.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["message"]
    return error


async def _chunked_post(app: Starlette, path: str, parts: list[bytes]) -> int:
    """POST ``parts`` as a body of unknown length straight to the ASGI app (httpx's transport
    would leave its own body iterator half-read, which trio reports); returns the status."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "server": ("t", 80), "client": ("c", 1),
        "headers": [(b"authorization", f"Bearer {ACME}".encode()),
                    (b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
    }  # fmt: skip
    messages = [{"type": "http.request", "body": part, "more_body": True} for part in parts]
    read = 0

    async def receive() -> dict[str, object]:
        nonlocal read
        read += 1
        return messages[read - 1] if read <= len(messages) else {"type": "http.disconnect"}

    statuses: list[int] = []

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(int(message["status"]))  # type: ignore[call-overload]

    await app(scope, receive, send)
    assert read < len(parts)  # refused before the end of the body
    return statuses[0]


async def test_oversize_bodies_are_413(
    app: Starlette, acme: httpx.AsyncClient, register: Register
) -> None:
    big = b'{"script": "' + b"x" * 70_000 + b'"}'  # the tests' limit is 64 KiB
    error = _error(await acme.post("/api/v1/jobs", content=big, headers=JSON), 413)
    assert error["code"] == "body_too_large"
    # a chunked body (no Content-Length) is counted while it is read
    assert await _chunked_post(app, "/api/v1/jobs", [b'{"script": "', *[b"x" * 1000] * 100]) == 413
    yaml = b"name: x\nsteps: []\n#" + b"x" * 70_000
    _error(await acme.post("/api/v1/pipelines", content=yaml), 413)
    _worker_id, headers = await register()
    logs = b'{"attempt": 1, "chunks": [' + b'{"seq": 0, "stream": "stdout", "data": "x"},' * 2000
    _error(
        await acme.post("/api/v1/jobs/job-x/logs", content=logs, headers={**JSON, **headers}), 413
    )


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"script": "true",}', "line 1, column 19"),
        (b"{'script': 'true'}", "malformed JSON"),
        (b'{"script": "\xff"}', "not UTF-8"),
        (b'{"timeout_s": NaN, "script": "x"}', "NaN"),
        (b'{"script": "\\ud800"}', "lone surrogate"),
        (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),
        (b'{"priority": ' + b"9" * 5000 + b', "script": "x"}', "malformed JSON"),
        (b"", "malformed JSON"),
        (b"[]", "expected a job spec mapping"),
        (b'{"timeout_s": 1e400, "script": "x"}', "positive number"),
        (b'{"script": "x", "env": {"A": {"B": 1}}}', "expected a string"),
        (b'{"script": "x", "name": "a\\u0000b"}', "NUL"),
    ],
    ids=lambda value: value[:20].decode("ascii", "replace") if isinstance(value, bytes) else value,
)
async def test_malformed_job_bodies_are_400(
    acme: httpx.AsyncClient, body: bytes, fragment: str
) -> None:
    response = await acme.post("/api/v1/jobs", content=body, headers=JSON)
    _error(response, 400)
    assert fragment in response.text


async def test_agent_bodies_are_strict(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register
) -> None:
    worker_id, headers = await register()
    job_id = (await acme.post("/api/v1/jobs", json={"script": "true"})).json()["id"]
    cases: list[tuple[str, object, set[str]]] = [
        ("start", {}, {"attempt"}),
        ("start", {"attempt": "1"}, {"attempt"}),
        ("start", {"attempt": 1, "worker": "w"}, {"worker"}),
        ("start", {"attempt": 0}, {"attempt"}),
        ("start", {"attempt": 2**40}, {"attempt"}),
        ("logs", {"attempt": 1, "chunks": [{"seq": -1, "stream": "out", "data": 5}]},
         {"chunks[0].seq", "chunks[0].stream", "chunks[0].data"}),
        ("logs", {"attempt": 1, "chunks": {"seq": 0}}, {"chunks"}),
        ("finish", {"attempt": 1, "exit_code": 1.5, "timed_out": "yes"},
         {"exit_code", "timed_out"}),
        ("finish", {"attempt": 1, "log_chunks": [{"seq": 0, "stream": "stdout", "data": "",
                                                  "ts": -1}]}, {"log_chunks[0].ts"}),
    ]  # fmt: skip
    for path, body, paths in cases:
        response = await client.post(f"/api/v1/jobs/{job_id}/{path}", json=body, headers=headers)
        error = _error(response, 400)
        assert {d["path"] for d in error["details"]} == paths, (path, body)  # type: ignore[attr-defined]
    # log output may hold NUL characters; a name may not
    nul = {"attempt": 1, "chunks": [{"seq": 0, "stream": "stdout", "data": "a\0b"}]}
    logged = await client.post(f"/api/v1/jobs/{job_id}/logs", json=nul, headers=headers)
    assert logged.status_code == 409  # well formed: refused by the fence (not started)
    named = await client.post(
        "/api/v1/workers", json={"name": "w", "hostname": "a\0"}, headers=auth(AGENT)
    )
    assert _error(named, 400)["details"] == [
        {"path": "hostname", "message": "must not contain a NUL character"}
    ]
    running = {"running": [{"job_id": job_id}]}
    beat = await client.post(
        f"/api/v1/workers/{worker_id}/heartbeat", json=running, headers=headers
    )
    assert _error(beat, 400)["details"] == [{"path": "running[0].attempt", "message": "required"}]
    empty = await client.post(f"/api/v1/jobs/{job_id}/start", content=b" ", headers=headers)
    _error(empty, 400)


async def test_wrong_content_type_is_415(acme: httpx.AsyncClient, register: Register) -> None:
    plain = {"Content-Type": "text/plain"}
    error = _error(await acme.post("/api/v1/jobs", content=b"{}", headers=plain), 415)
    assert error["code"] == "unsupported_media_type"
    form = await acme.post("/api/v1/pipelines", data={"name": "x"})
    _error(form, 415)
    worker_id, headers = await register()
    beat = await acme.post(
        f"/api/v1/workers/{worker_id}/heartbeat", content=b"x", headers={**headers, **plain}
    )
    _error(beat, 415)
    # a +json type and charset parameters are fine
    ok = await acme.post(
        "/api/v1/jobs",
        content=b'{"script": "true"}',
        headers={"Content-Type": "application/vnd.hodei+json; charset=utf-8"},
    )
    assert ok.status_code == 202


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("state=sleeping", "state"),
        ("state=queued,nope", "state"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=1&limit=2", "limit"),
        ("offset=-1", "offset"),
        ("offset=1e3", "offset"),
        ("offset=%EF%BC%91", "offset"),  # a full-width digit is no ASCII digit
        ("stat=queued", "stat"),
        ("worker=a&worker=b", "worker"),
    ],
)
async def test_bad_query_parameters_are_400(acme: httpx.AsyncClient, query: str, path: str) -> None:
    error = _error(await acme.get(f"/api/v1/jobs?{query}"), 400)
    assert [d["path"] for d in error["details"]] == [path]  # type: ignore[attr-defined]


async def test_bad_worker_queries(acme: httpx.AsyncClient, register: Register) -> None:
    _error(await acme.get("/api/v1/workers?state=asleep"), 400)
    worker_id, headers = await register()
    for wait in ("abc", "-1", "nan", "inf"):
        response = await acme.post(f"/api/v1/workers/{worker_id}/poll?wait={wait}", headers=headers)
        _error(response, 400)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/jobs/job.with.dots",
        "/api/v1/jobs/*",
        "/api/v1/jobs/" + "x" * 500,
        "/api/v1/jobs/%E2%9C%93",
        "/api/v1/jobs/a%2Fb",
        "/api/v1/pipelines/..",
        "/api/v1/runs/%00",
        "/api/v1/workers/w%20x",
    ],
)
async def test_bad_ids_are_404(acme: httpx.AsyncClient, path: str) -> None:
    error = _error(await acme.get(path), 404)
    assert error["code"] == "not_found"


class _BrokenStore(MemoryStore):
    """A store whose job reads fail: as the database being down does, or a bug."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def get_job(self, job_id: str) -> Job:
        raise self.error

    async def list_jobs(self, query: JobQuery) -> list[Job]:
        raise self.error


async def _client_over(store: MemoryStore) -> httpx.AsyncClient:
    app = create_app(Hodei(store=store, bus=MemoryEventBus()), make_settings())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_backend_failures_are_503() -> None:
    store = _BrokenStore(StorageError("database is down"))
    async with await _client_over(store) as client:
        error = _error(await client.get("/api/v1/jobs", headers=auth(ACME)), 503)
        assert error["code"] == "unavailable" and "database" not in str(error)
        _error(await client.get("/api/v1/jobs/job-x", headers=auth(ACME)), 503)
        assert _error(await client.get("/readyz"), 503)["code"] == "not_ready"
        assert (await client.get("/healthz")).status_code == 200


async def test_slow_store_is_not_ready(autojump_clock: trio.testing.MockClock) -> None:
    class _Slow(MemoryStore):
        async def get_job(self, job_id: str) -> Job:
            await trio.sleep(10)
            raise AssertionError("never")

    async with await _client_over(_Slow()) as client:
        _error(await client.get("/readyz"), 503)


async def test_unforeseen_errors_are_a_json_500_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = _BrokenStore(RuntimeError("a bug"))
    with caplog.at_level(logging.ERROR, logger="hodei.http"):
        async with await _client_over(store) as client:
            response = await client.get("/api/v1/jobs", headers=auth(ACME))
    assert response.json() == {
        "error": {"code": "internal", "message": "internal server error", "details": []}
    }
    assert response.status_code == 500
    assert "a bug" in caplog.text  # logged, never sent
