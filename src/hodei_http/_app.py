"""``create_app``: the Starlette application over a ``Hodei``, with no globals."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hodei_core import Hodei
from hodei_core.errors import BackendError, JobNotFound

from ._api import Api, routes
from ._auth import Authenticator
from ._errors import ApiError, LastResort, error_response, http_exception_handler, json_response
from ._health import bus_state
from ._metrics import Metrics
from ._openapi import openapi_document
from ._routes_agents import agent_endpoints
from ._routes_jobs import job_endpoints
from ._routes_pipelines import pipeline_endpoints
from ._routes_workers import worker_endpoints
from ._settings import ServerSettings

__all__ = ["create_app"]

# A store that takes longer than this to answer a lookup is not ready to serve.
_READY_TIMEOUT_S = 2.0


def _service_routes(api: Api) -> list[Route]:
    document: list[bytes] = []  # rendered on first request, then kept

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        # Ready is the store's word alone: with the bus down the engine works on by reading the
        # store (DESIGN §3), so taking the server out of rotation would help nobody. The body
        # says how the bus stands, for whoever looks.
        with trio.move_on_after(_READY_TIMEOUT_S):
            try:
                # the cheapest question a store can answer: an indexed lookup of nothing
                await api.hodei.store.get_job("job-readiness-probe")
            except JobNotFound:
                pass
            except BackendError as exc:
                message = f"the store does not answer: {type(exc).__name__}"
                return error_response(ApiError(503, "not_ready", message))
            return json_response({"status": "ready", "bus": bus_state(api.hodei.bus)})
        return error_response(ApiError(503, "not_ready", "the store is too slow to answer"))

    async def metrics(request: Request) -> Response:
        text = await api.metrics.render(api.hodei)
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi(request: Request) -> Response:
        if not document:
            document.append(json.dumps(openapi_document(), indent=2).encode() + b"\n")
        return Response(document[0], media_type="application/json")

    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/api/v1/openapi.json", openapi, methods=["GET"]),
    ]


def create_app(hodei: Hodei, settings: ServerSettings) -> Starlette:
    """The HTTP API of DESIGN §6 over ``hodei``.

    The caller runs ``hodei.run`` (the scheduler and the reaper) alongside; the app's lifespan
    only counts job events for ``/metrics``, wakes the long-polls the bus failed to wake, and
    notes the workers whose polls wait as alive.
    ``app.state.api`` holds what the routes share.

    Args:
        hodei: the engine to serve.
        settings: tokens, limits and the pace agents are told to keep.
    """
    api = Api(hodei=hodei, settings=settings, auth=Authenticator(settings), metrics=Metrics())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            await nursery.start(api.metrics.collect, hodei)
            await nursery.start(api.polls.sweep, hodei)
            await nursery.start(api.polls.keep_alive, hodei, settings.lost_after_s)
            yield
            nursery.cancel_scope.cancel()

    endpoints = [
        *job_endpoints(),
        *pipeline_endpoints(),
        *worker_endpoints(),
        *agent_endpoints(),
    ]
    app = Starlette(
        routes=[*_service_routes(api), *routes(api, endpoints)],
        # inside Starlette's own error middleware, which would answer in plain text and raise
        middleware=[Middleware(LastResort)],
        exception_handlers={HTTPException: http_exception_handler},
        lifespan=lifespan,
    )
    app.state.api = api
    return app
