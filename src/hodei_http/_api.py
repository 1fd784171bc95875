"""What every route shares: the ``Api`` (engine, settings, authenticator, metrics), the
endpoint wrapper that authenticates and answers errors, and the lookups that keep each tenant
to its own objects."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import attrs
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hodei_core import Hodei, Job, Pipeline, Run
from hodei_core.errors import HodeiError, JobNotFound, NotFound, PipelineNotFound, RunNotFound

from ._auth import Agent, Authenticator, Caller, Tenant, WorkerCaller
from ._body import JSON_TYPES, check_media_type, parse_json, read_body
from ._errors import ApiError, api_error_from, error_response
from ._metrics import Metrics
from ._polls import WaitingPolls
from ._requests import structure
from ._settings import ServerSettings

__all__ = [
    "ID",
    "Api",
    "Endpoint",
    "Handler",
    "json_request",
    "own_worker",
    "page",
    "path_id",
    "routes",
    "tenant_job",
    "tenant_pipeline",
    "tenant_run",
]

T = TypeVar("T")

#: A route's handler: the caller is one of the principal types the route allows.
Handler = Callable[["Api", Request, Any], Awaitable[Response]]

#: What an id looks like. The server makes ids such as "job-<hex>": anything else names no
#: object, and must not reach a bus topic (where "." and "*" mean something).
ID = re.compile(r"[A-Za-z0-9_-]{1,100}\Z")

_WHO = {Tenant: "tenants (an API token)", Agent: "the agent token", WorkerCaller: "workers"}


#: the fleet-wide heartbeat rate a large fleet is slowed down to (see Api.heartbeat_pace)
_FLEET_BEATS_PER_S = 50.0
#: the same for the workers with a poll waiting, which the polls' keep-alive speaks for
_POLLING_BEATS_PER_S = 5.0
#: the slowest pace any worker is asked for
_SLOWEST_PACE_S = 300.0


@attrs.frozen
class Api:
    """The engine and what the server adds around it."""

    hodei: Hodei
    settings: ServerSettings
    auth: Authenticator
    metrics: Metrics
    polls: WaitingPolls = attrs.field(factory=WaitingPolls)

    def heartbeat_pace(self, worker_id: str | None = None, *, draining: bool = False) -> float:
        """The heartbeat pace to ask of this worker (of a worker registering: None), which is
        ``draining`` or not.

        Every heartbeat is a request, and a large fleet's heartbeats crowd out everyone else's
        (``bench/http_longpoll.py``: 1,000 agents beating every 5 s took most of a core). The
        pace stretches with the number of agents long-polling this process:

        - for a worker that ``WaitingPolls.keep_alive`` keeps alive while it polls (a poll of
          it waits here, shorter than ``lost_after_s``), and is not told to drain, to about
          ``_POLLING_BEATS_PER_S`` heartbeats a second in all, up to ``_SLOWEST_PACE_S``: its
          heartbeats no longer keep it from being lost. A worker stops polling when it
          drains, beats at once (``WorkerLoop.drain``), and is answered the pace below;
        - for the others, to about ``_FLEET_BEATS_PER_S`` heartbeats a second, up to a third of
          ``lost_after_s``, so that a worker may miss two beats in a row and not be lost.

        Never faster than ``heartbeat_interval_s``.
        """
        settings = self.settings
        if (
            worker_id is not None
            and not draining
            and self.polls.speak_for(worker_id, settings.lost_after_s)
        ):
            stretched = min(len(self.polls) / _POLLING_BEATS_PER_S, _SLOWEST_PACE_S)
        else:
            stretched = min(
                self.metrics.polls_waiting / _FLEET_BEATS_PER_S, settings.lost_after_s / 3
            )
        return max(settings.heartbeat_interval_s, stretched)

    @property
    def max_wait_s(self) -> float:
        """The longest long-poll wait the server grants."""
        return max(60.0, self.settings.poll_wait_s)


@attrs.frozen
class Endpoint:
    """One method of one path: its handler and who may call it (nobody named: anyone)."""

    path: str
    method: str
    handler: Handler
    allow: tuple[type[Caller], ...]


def _dispatch(
    api: Api, endpoints: Mapping[str, Endpoint]
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        found = endpoints[method]  # the Route has already refused other methods (405)
        try:
            caller: Caller | None = None
            if found.allow:
                caller = api.auth.identify(request.headers.get("authorization"))
                if not isinstance(caller, found.allow):
                    who = " or ".join(_WHO[kind] for kind in found.allow)
                    raise ApiError(403, "forbidden", f"this endpoint is for {who}")
            return await found.handler(api, request, caller)
        except ApiError as exc:
            return error_response(exc)
        except HodeiError as exc:
            return error_response(api_error_from(exc))

    return endpoint


def routes(api: Api, endpoints: Iterable[Endpoint]) -> list[Route]:
    """One route per path, serving each of its methods: so that a wrong method is answered
    with a 405 whose ``Allow`` names every method of the path."""
    by_path: dict[str, dict[str, Endpoint]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, {})[endpoint.method] = endpoint
    return [
        Route(path, _dispatch(api, methods), methods=list(methods))
        for path, methods in by_path.items()
    ]


def path_id(request: Request, missing: Callable[[str], NotFound], key: str = "id") -> str:
    """The id in the path, if it could be one (else the ``missing`` error: 404)."""
    value = str(request.path_params[key])
    if not ID.match(value):
        raise missing(value[:100])
    return value


def own_worker(request: Request, caller: WorkerCaller) -> str:
    """The worker id in the path, which must be the calling worker's own.

    Raises:
        ApiError: 403 when a worker calls about another worker.
    """
    worker_id = str(request.path_params["id"])
    if worker_id != caller.worker_id:
        raise ApiError(403, "forbidden", "a worker token is only good for its own worker")
    return worker_id


async def tenant_job(api: Api, request: Request, tenant: Tenant) -> Job:
    """The job in the path, if it is the tenant's (another tenant's is "not found")."""
    job_id = path_id(request, JobNotFound)
    job = await api.hodei.get(job_id)
    if job.tenant != tenant.name:
        raise JobNotFound(job_id)
    return job


async def tenant_pipeline(api: Api, request: Request, tenant: Tenant) -> Pipeline:
    """The pipeline in the path, if it is the tenant's."""
    pipeline_id = path_id(request, PipelineNotFound)
    pipeline = await api.hodei.get_pipeline(pipeline_id)
    if pipeline.tenant != tenant.name:
        raise PipelineNotFound(pipeline_id)
    return pipeline


async def tenant_run(api: Api, request: Request, tenant: Tenant) -> Run:
    """The run in the path, if it is the tenant's."""
    run_id = path_id(request, RunNotFound)
    run = await api.hodei.get_run(run_id)
    if run.tenant != tenant.name:
        raise RunNotFound(run_id)
    return run


async def json_request(
    api: Api, request: Request, cls: type[T], *, optional: bool = False, nul_ok: bool = False
) -> T:
    """The JSON body structured as ``cls``; with ``optional``, an empty body reads as ``{}``;
    ``nul_ok`` lets strings hold NUL characters (log output).

    Raises:
        ApiError: 413, 415 or 400 as the body deserves.
    """
    check_media_type(request, JSON_TYPES)
    body = await read_body(request, api.settings.max_body_bytes)
    if optional and not body.strip():
        return structure({}, cls)
    if not body.strip():
        raise ApiError(400, "malformed_body", "the request needs a JSON body")
    return structure(parse_json(body, nul_ok=nul_ok), cls)


def page(items: list[Any], offset: int, limit: int) -> dict[str, Any]:
    """A page of a list: its items and where the next page starts (null: no more)."""
    return {"items": items, "next_offset": offset + len(items) if len(items) == limit else None}
