"""The fleet as users see it: list workers, look at one, drain one.

Workers belong to no tenant: every tenant may see the whole fleet and drain a worker, as the
users' table of DESIGN §6 has it. The agent registration token (an operator's credential)
may do the same.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from hodei_core import WorkerState
from hodei_core.errors import Problem, WorkerNotFound

from ._api import Api, Endpoint, page, path_id
from ._auth import Agent, Tenant
from ._body import check_query, query_int
from ._errors import ApiError, json_response
from ._wire import worker_json

__all__ = ["worker_endpoints"]

_STATES = {state.value: state for state in WorkerState}


async def list_workers(api: Api, request: Request, caller: Tenant | Agent) -> Response:
    """``GET /api/v1/workers``: every worker in registration order, optionally by state."""
    check_query(request, ("state", "offset", "limit"))
    wanted = {v for item in request.query_params.getlist("state") for v in item.split(",")}
    unknown = sorted(wanted - set(_STATES))
    if unknown:
        allowed = ", ".join(_STATES)
        problems = [
            Problem("state", f"unknown state {v[:40]!r}; one of {allowed}") for v in unknown
        ]
        raise ApiError(400, "invalid", "bad query parameter", problems)
    offset = query_int(request, "offset", 0, 0, 2**31 - 1)
    limit = query_int(request, "limit", 100, 1, 1000)
    workers = await api.hodei.list_workers()
    if wanted:
        workers = [w for w in workers if w.state.value in wanted]
    items = [worker_json(w) for w in workers[offset : offset + limit]]
    return json_response(page(items, offset, limit))


async def get_worker(api: Api, request: Request, caller: Tenant | Agent) -> Response:
    """``GET /api/v1/workers/{id}``."""
    check_query(request, ())
    worker = await api.hodei.get_worker(path_id(request, WorkerNotFound))
    return json_response(worker_json(worker))


async def drain_worker(api: Api, request: Request, caller: Tenant | Agent) -> Response:
    """``POST /api/v1/workers/{id}/drain``: no new jobs; offline once its jobs have finished."""
    check_query(request, ())
    worker = await api.hodei.drain_worker(path_id(request, WorkerNotFound))
    return json_response(worker_json(worker), 202)


def worker_endpoints() -> list[Endpoint]:
    """The endpoints of this module."""
    users = (Tenant, Agent)
    return [
        Endpoint("/api/v1/workers", "GET", list_workers, users),
        Endpoint("/api/v1/workers/{id}", "GET", get_worker, users),
        Endpoint("/api/v1/workers/{id}/drain", "POST", drain_worker, users),
    ]
