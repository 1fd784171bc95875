"""``HodeiClient``: the users' API of a Hodei server, over httpx.

Objects come back as the server's JSON (plain dicts, in the shapes of its OpenAPI document);
lists as a ``Page``. Every error answer becomes an ``ApiError``; a server that cannot be reached
(or that drops the connection) a ``ServerUnreachable``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import attrs
import httpx

from ._sse import SseEvent, SseParser

__all__ = ["ApiError", "ApiProblem", "HodeiClient", "Page", "ServerUnreachable"]

#: An object as the server sends it.
JsonObject = dict[str, Any]

_JSON = "application/json"
_YAML = "application/yaml"
# The server sends a keep-alive comment after 15 s of silence: a longer silence on a log
# stream means the connection is dead, and the follower reconnects.
_STREAM_READ_TIMEOUT_S = 60.0


@attrs.frozen
class ApiProblem:
    """One problem of a refused request: where (``steps[1].script``) and what."""

    path: str
    message: str


class ApiError(Exception):
    """The server answered with an error (``{"error": {"code", "message", "details"}}``).

    Attributes:
        status: the HTTP status.
        code: the server's stable word for it (``not_found``, ``invalid``…).
        message: the server's one line for a person.
        details: every problem of a refused request, with its path.
        retry_after_s: for 429 and 503, when to try again (from ``Retry-After``), else None.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Sequence[ApiProblem] = (),
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = tuple(details)
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code!r}, {self.message!r})"


class ServerUnreachable(Exception):
    """No answer from the server: refused or failed connection, timeout, dropped stream.

    Attributes:
        server: the server's base URL.
        reason: what went wrong, as the network library says it.
        connected: whether the connection had been made (the failure came after).
    """

    def __init__(self, server: str, reason: str, *, connected: bool = False) -> None:
        what = "lost the connection to" if connected else "cannot reach"
        super().__init__(f"{what} the server at {server}: {reason}")
        self.server = server
        self.reason = reason
        self.connected = connected


@attrs.frozen
class Page:
    """A page of a list: its items, and the offset of the next page (None: this was the last)."""

    items: tuple[JsonObject, ...]
    next_offset: int | None


def _reason(exc: httpx.HTTPError) -> str:
    """What went wrong, in the system's words when it has some: under trio, a refused
    connection is "all attempts to connect to … failed", with "Connection refused" inside."""
    seen: list[BaseException] = [exc]
    for error in seen:  # grows as it goes: causes, contexts, members of groups
        if isinstance(error, OSError) and error.strerror:
            # trio words its own ("Error connecting to (…): Connection refused"): the
            # system's words for a known errno are shorter; getaddrinfo's are its own
            code = error.errno
            return os.strerror(code) if isinstance(code, int) and code > 0 else error.strerror
        seen.extend(e for e in (error.__cause__, error.__context__) if e is not None)
        if isinstance(error, BaseExceptionGroup):
            seen.extend(error.exceptions)
        if len(seen) > 50:  # a cycle of contexts
            break
    # some httpx errors have no message (a bare ReadTimeout): their class says enough then
    return str(exc) or type(exc).__name__


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _api_error(response: httpx.Response) -> ApiError:
    """The error an error answer stands for (also one that is not in the server's shape, such
    as a proxy's HTML page)."""
    status = response.status_code
    try:
        error = response.json()["error"]
        details = [ApiProblem(str(d["path"]), str(d["message"])) for d in error.get("details", [])]
        return ApiError(
            status, str(error["code"]), str(error["message"]), details, _retry_after(response)
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        message = f"HTTP {status} {response.reason_phrase}".rstrip()
        return ApiError(status, f"http_{status}", message, retry_after_s=_retry_after(response))


class HodeiClient:
    """An async client of a Hodei server's users' API; use it as an async context manager.

    Args:
        server: the server's base URL (``http://127.0.0.1:8080``).
        token: a tenant's API token, sent as ``Authorization: Bearer …`` (None: none sent).
        timeout_s: how long any request may take (log streams excepted).
        transport: an httpx transport to use instead of the network (tests).
    """

    def __init__(
        self,
        server: str,
        token: str | None = None,
        *,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        headers = {"Accept": _JSON, "User-Agent": "hodei-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._timeout_s = timeout_s
        self._http = httpx.AsyncClient(
            base_url=self.server, headers=headers, timeout=timeout_s, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        # None-valued parameters are left out rather than sent empty (the server refuses those)
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = await self._http.request(
                method, path, params=query, json=json, content=content, headers=headers
            )
        except httpx.TransportError as exc:
            connected = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
            raise ServerUnreachable(self.server, _reason(exc), connected=connected) from exc
        if response.is_error:
            raise _api_error(response)
        return response

    async def _object(self, method: str, path: str, **kwargs: Any) -> JsonObject:
        response = await self._request(method, path, **kwargs)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ApiError(
                response.status_code,
                "bad_response",
                f"the answer from {self.server} is not a JSON object: is it a Hodei server?",
            )
        return data

    async def _page(self, path: str, params: Mapping[str, Any]) -> Page:
        data = await self._object("GET", path, params=params)
        items = data.get("items")
        if not isinstance(items, list):
            raise ApiError(200, "bad_response", f"the answer from {self.server} is not a list")
        next_offset = data.get("next_offset")
        return Page(tuple(items), next_offset if isinstance(next_offset, int) else None)

    # -- jobs --

    async def submit_job(self, spec: Mapping[str, Any]) -> JsonObject:
        """Submit a job (``command`` or ``script``, and the optional fields of a job spec)."""
        return await self._object("POST", "/api/v1/jobs", json=dict(spec))

    async def list_jobs(
        self,
        *,
        states: Sequence[str] = (),
        run: str | None = None,
        worker: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> Page:
        """A page of the tenant's jobs, oldest first, optionally of some states, a run, a
        worker."""
        params = {
            "state": ",".join(states) or None,
            "run": run,
            "worker": worker,
            "offset": offset,
            "limit": limit,
        }
        return await self._page("/api/v1/jobs", params)

    async def get_job(self, job_id: str) -> JsonObject:
        """A job."""
        return await self._object("GET", f"/api/v1/jobs/{_id(job_id)}")

    async def cancel_job(self, job_id: str) -> JsonObject:
        """Cancel a job; returns it ``cancelled``, or ``cancelling`` until its worker stops it."""
        return await self._object("POST", f"/api/v1/jobs/{_id(job_id)}/cancel")

    async def read_logs(
        self, job_id: str, *, attempt: int | None = None, offset: int = 0, limit: int = 10_000
    ) -> JsonObject:
        """A piece of an attempt's log (the current attempt by default) as JSON:
        ``{"job_id", "attempt", "state", "chunks": [{"seq", "stream", "data", "ts"}],
        "next_offset"}``."""
        params = {"attempt": attempt, "offset": offset, "limit": limit}
        return await self._object("GET", f"/api/v1/jobs/{_id(job_id)}/logs", params=params)

    async def stream_logs(
        self, job_id: str, *, attempt: int | None = None, last_event_id: str | None = None
    ) -> AsyncGenerator[SseEvent, None]:
        """A job's log as it is produced: ``log`` events, ``attempt`` when it is tried again,
        then ``end`` with the job; resumes after ``last_event_id`` if given.

        Read it to its end (the server ends it after ``end``) to let the connection go back
        to the pool. Left early, close it (``contextlib.aclosing``); under trio, httpx's own
        generators then warn (``ResourceWarning``) when they are collected half-read.
        """
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        timeout = httpx.Timeout(self._timeout_s, read=_STREAM_READ_TIMEOUT_S)
        path = f"/api/v1/jobs/{_id(job_id)}/logs/stream"
        params = {"attempt": attempt} if attempt is not None else None
        connected = False
        try:
            async with self._http.stream(
                "GET", path, params=params, headers=headers, timeout=timeout
            ) as response:
                connected = True
                if response.is_error:
                    await response.aread()
                    raise _api_error(response)
                parser = SseParser()
                async for line in response.aiter_lines():
                    event = parser.feed(line)
                    if event is not None:
                        yield event
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.server, _reason(exc), connected=connected) from exc

    # -- pipelines and runs --

    async def create_pipeline(
        self, document: Mapping[str, Any] | str | bytes, *, content_type: str | None = None
    ) -> JsonObject:
        """Create a pipeline from a document: a mapping (sent as JSON), or the text of a
        pipeline file (YAML, which JSON also is, unless ``content_type`` says otherwise)."""
        if isinstance(document, Mapping):
            return await self._object("POST", "/api/v1/pipelines", json=dict(document))
        body = document.encode() if isinstance(document, str) else document
        headers = {"Content-Type": content_type or _YAML}
        return await self._object("POST", "/api/v1/pipelines", content=body, headers=headers)

    async def list_pipelines(self, *, offset: int = 0, limit: int = 100) -> Page:
        """A page of the tenant's pipelines, oldest first."""
        return await self._page("/api/v1/pipelines", {"offset": offset, "limit": limit})

    async def get_pipeline(self, pipeline_id: str) -> JsonObject:
        """A pipeline, its steps in the shape of a pipeline file."""
        return await self._object("GET", f"/api/v1/pipelines/{_id(pipeline_id)}")

    async def delete_pipeline(self, pipeline_id: str) -> None:
        """Delete a pipeline (its runs stay)."""
        await self._request("DELETE", f"/api/v1/pipelines/{_id(pipeline_id)}")

    async def start_run(self, pipeline_id: str) -> JsonObject:
        """Run a pipeline; returns the run, just started."""
        return await self._object("POST", f"/api/v1/pipelines/{_id(pipeline_id)}/runs")

    async def list_runs(self, pipeline_id: str, *, offset: int = 0, limit: int = 100) -> Page:
        """A page of a pipeline's runs, oldest first."""
        path = f"/api/v1/pipelines/{_id(pipeline_id)}/runs"
        return await self._page(path, {"offset": offset, "limit": limit})

    async def get_run(self, run_id: str) -> JsonObject:
        """A run, with each step's state and job."""
        return await self._object("GET", f"/api/v1/runs/{_id(run_id)}")

    async def cancel_run(self, run_id: str) -> JsonObject:
        """Cancel a run and its live jobs."""
        return await self._object("POST", f"/api/v1/runs/{_id(run_id)}/cancel")

    # -- the fleet --

    async def list_workers(
        self, *, states: Sequence[str] = (), offset: int = 0, limit: int = 100
    ) -> Page:
        """A page of the workers, in registration order, optionally of some states."""
        params = {"state": ",".join(states) or None, "offset": offset, "limit": limit}
        return await self._page("/api/v1/workers", params)

    async def get_worker(self, worker_id: str) -> JsonObject:
        """A worker."""
        return await self._object("GET", f"/api/v1/workers/{_id(worker_id)}")

    async def drain_worker(self, worker_id: str) -> JsonObject:
        """Drain a worker: no new jobs; it goes offline when its jobs have finished."""
        return await self._object("POST", f"/api/v1/workers/{_id(worker_id)}/drain")


def _id(value: str) -> str:
    """``value`` as one path segment, whatever a user typed: ``a/b`` or ``..`` must not reach
    another route.

    Raises:
        ApiError: 400 for an empty id, which names nothing (and would name a list).
    """
    if not value:
        raise ApiError(400, "invalid", "an id cannot be empty")
    return quote(value, safe="").replace(".", "%2E")
