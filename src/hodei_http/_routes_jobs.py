"""The users' job endpoints: submit, list, get, cancel, and the log (whole or streamed)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from hodei_backends._documents import parse_job_spec
from hodei_core import JobState
from hodei_core.errors import Problem
from hodei_core.ports import JobQuery

from ._api import ID, Api, Endpoint, page, tenant_job
from ._auth import Tenant
from ._body import (
    JSON_TYPES,
    check_media_type,
    check_query,
    parse_json,
    query_int,
    read_body,
)
from ._errors import ApiError, json_response
from ._sse import Emit, EventStream, follow_job, parse_last_event_id
from ._wire import chunk_json, job_json

__all__ = ["job_endpoints"]

_MAX_OFFSET = 2**31 - 1
_MAX_PAGE = 1000
_MAX_LOG_CHUNKS = 10_000
_STATES = {state.value: state for state in JobState}


async def submit_job(api: Api, request: Request, caller: Tenant) -> Response:
    """``POST /api/v1/jobs``: queue a job spec for the caller's tenant."""
    check_query(request, ())
    check_media_type(request, JSON_TYPES)
    doc = parse_json(await read_body(request, api.settings.max_body_bytes))
    job = await api.hodei.submit(parse_job_spec(doc), tenant=caller.name)
    return json_response(job_json(job), 202, {"Location": f"/api/v1/jobs/{job.id}"})


def _states(request: Request) -> frozenset[JobState] | None:
    values = [v for item in request.query_params.getlist("state") for v in item.split(",")]
    if not values:
        return None
    unknown = [v for v in values if v not in _STATES]
    if unknown:
        allowed = ", ".join(_STATES)
        problems = [
            Problem("state", f"unknown state {v[:40]!r}; one of {allowed}") for v in unknown
        ]
        raise ApiError(400, "invalid", "bad query parameter", problems)
    return frozenset(_STATES[v] for v in values)


def _one(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise ApiError(400, "invalid", "bad query parameter", [Problem(name, "give it once")])
    return values[0] if values else None


async def list_jobs(api: Api, request: Request, caller: Tenant) -> Response:
    """``GET /api/v1/jobs``: the tenant's jobs, oldest first, filtered and paged."""
    check_query(request, ("state", "tenant", "worker", "run", "offset", "limit"))
    states = _states(request)
    tenant = _one(request, "tenant")
    offset = query_int(request, "offset", 0, 0, _MAX_OFFSET)
    limit = query_int(request, "limit", 100, 1, _MAX_PAGE)
    query = JobQuery(
        tenant=caller.name,
        states=states,
        worker_id=_one(request, "worker"),
        run_id=_one(request, "run"),
        offset=offset,
        limit=limit,
    )
    # another tenant's jobs are not there to be seen, and an id the server could not have made
    # names nothing: either filter finds nothing
    nothing = tenant not in (None, caller.name) or not all(
        value is None or ID.match(value) for value in (query.worker_id, query.run_id)
    )
    jobs = [] if nothing else await api.hodei.store.list_jobs(query)
    return json_response(page([job_json(job) for job in jobs], offset, limit))


async def get_job(api: Api, request: Request, caller: Tenant) -> Response:
    """``GET /api/v1/jobs/{id}``."""
    check_query(request, ())
    return json_response(job_json(await tenant_job(api, request, caller)))


async def cancel_job(api: Api, request: Request, caller: Tenant) -> Response:
    """``POST /api/v1/jobs/{id}/cancel``: cancelled at once, or ``cancelling`` until its worker
    has stopped it."""
    check_query(request, ())
    job = await tenant_job(api, request, caller)
    return json_response(job_json(await api.hodei.cancel(job.id)), 202)


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "text/plain" not in accept


async def get_logs(api: Api, request: Request, caller: Tenant) -> Response:
    """``GET /api/v1/jobs/{id}/logs``: an attempt's log from ``offset`` (a chunk's seq) on, as
    text, or as JSON chunks with ``Accept: application/json``."""
    check_query(request, ("offset", "attempt", "limit"))
    job = await tenant_job(api, request, caller)
    offset = query_int(request, "offset", 0, 0, 2**62)
    attempt = query_int(request, "attempt", job.attempt, 1, _MAX_OFFSET)
    limit = query_int(request, "limit", _MAX_LOG_CHUNKS, 1, _MAX_LOG_CHUNKS)
    chunks = await api.hodei.store.read_logs(job.id, attempt, offset, limit)
    next_offset = chunks[-1].seq + 1 if chunks else offset
    if _wants_json(request):
        body = {
            "job_id": job.id,
            "attempt": attempt,
            "state": job.state.value,
            "chunks": [chunk_json(chunk) for chunk in chunks],
            "next_offset": next_offset,
        }
        return json_response(body)
    headers = {
        "Hodei-Attempt": str(attempt),
        "Hodei-Next-Offset": str(next_offset),
        "Hodei-Job-State": job.state.value,
    }
    text = "".join(chunk.data for chunk in chunks)
    # lone surrogates cannot be UTF-8: replace them rather than fail the whole log
    body_bytes = text.encode("utf-8", "replace")
    return Response(body_bytes, 200, headers, media_type="text/plain; charset=utf-8")


async def stream_logs(api: Api, request: Request, caller: Tenant) -> Response:
    """``GET /api/v1/jobs/{id}/logs/stream``: Server-Sent Events, see ``_sse``."""
    check_query(request, ("offset", "attempt"))
    job = await tenant_job(api, request, caller)
    attempt = query_int(request, "attempt", job.attempt, 1, _MAX_OFFSET)
    offset = query_int(request, "offset", 0, 0, 2**62)
    resume = parse_last_event_id(request.headers.get("last-event-id"))
    if resume is not None:
        attempt, offset = resume

    async def produce(emit: Emit) -> None:
        await follow_job(api.hodei, job, attempt, offset, emit)

    return EventStream(produce)


def job_endpoints() -> list[Endpoint]:
    """The endpoints of this module."""
    t = (Tenant,)
    return [
        Endpoint("/api/v1/jobs", "POST", submit_job, t),
        Endpoint("/api/v1/jobs", "GET", list_jobs, t),
        Endpoint("/api/v1/jobs/{id}", "GET", get_job, t),
        Endpoint("/api/v1/jobs/{id}/cancel", "POST", cancel_job, t),
        Endpoint("/api/v1/jobs/{id}/logs", "GET", get_logs, t),
        Endpoint("/api/v1/jobs/{id}/logs/stream", "GET", stream_logs, t),
    ]
