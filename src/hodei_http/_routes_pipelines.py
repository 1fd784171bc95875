"""The users' pipeline and run endpoints."""

from __future__ import annotations

from functools import partial

import trio
from starlette.requests import Request
from starlette.responses import Response

from hodei_backends._documents import load_pipeline_text, parse_pipeline_document
from hodei_core import Step
from hodei_core.errors import PipelineInvalid

from ._api import Api, Endpoint, page, tenant_pipeline, tenant_run
from ._auth import Tenant
from ._body import (
    JSON_TYPES,
    YAML_TYPES,
    check_media_type,
    check_query,
    decode_text,
    media_type,
    parse_json,
    query_int,
    read_body,
    text_problems,
)
from ._errors import json_response
from ._wire import pipeline_json, run_json, steps_json

__all__ = ["pipeline_endpoints"]

_MAX_OFFSET = 2**31 - 1


async def _pipeline_document(api: Api, request: Request) -> tuple[str, list[Step]]:
    # no Content-Type: read it as YAML, which takes JSON too (what `curl --data-binary` sends)
    kind = media_type(request) and check_media_type(request, JSON_TYPES | YAML_TYPES)
    body = await read_body(request, api.settings.max_body_bytes)
    if kind in JSON_TYPES or kind.endswith("+json"):
        return parse_pipeline_document(parse_json(body))
    text = decode_text(body)
    # PyYAML is pure Python: a large document would hold up every other request meanwhile
    name, steps = await trio.to_thread.run_sync(
        partial(load_pipeline_text, text, filename="request body")
    )
    # YAML escapes ("\ud800") can make text no UTF-8 can carry
    problems = text_problems({"name": name, "steps": steps_json(steps, reveal_secrets=True)})
    if problems:
        raise PipelineInvalid(problems)
    return name, steps


async def create_pipeline(api: Api, request: Request, caller: Tenant) -> Response:
    """``POST /api/v1/pipelines``: validate and store a pipeline (JSON or YAML)."""
    check_query(request, ())
    name, steps = await _pipeline_document(api, request)
    pipeline = await api.hodei.create_pipeline(name, steps, tenant=caller.name)
    location = {"Location": f"/api/v1/pipelines/{pipeline.id}"}
    return json_response(pipeline_json(pipeline), 201, location)


async def list_pipelines(api: Api, request: Request, caller: Tenant) -> Response:
    """``GET /api/v1/pipelines``: the tenant's pipelines, oldest first, paged."""
    check_query(request, ("offset", "limit"))
    offset = query_int(request, "offset", 0, 0, _MAX_OFFSET)
    limit = query_int(request, "limit", 100, 1, 1000)
    pipelines = await api.hodei.list_pipelines(tenant=caller.name)
    items = [pipeline_json(p) for p in pipelines[offset : offset + limit]]
    return json_response(page(items, offset, limit))


async def get_pipeline(api: Api, request: Request, caller: Tenant) -> Response:
    """``GET /api/v1/pipelines/{id}``."""
    check_query(request, ())
    return json_response(pipeline_json(await tenant_pipeline(api, request, caller)))


async def delete_pipeline(api: Api, request: Request, caller: Tenant) -> Response:
    """``DELETE /api/v1/pipelines/{id}``: its runs stay."""
    check_query(request, ())
    pipeline = await tenant_pipeline(api, request, caller)
    await api.hodei.delete_pipeline(pipeline.id)
    return Response(status_code=204)


async def start_run(api: Api, request: Request, caller: Tenant) -> Response:
    """``POST /api/v1/pipelines/{id}/runs``: execute the pipeline."""
    check_query(request, ())
    pipeline = await tenant_pipeline(api, request, caller)
    run = await api.hodei.start_run(pipeline.id)
    return json_response(run_json(run), 202, {"Location": f"/api/v1/runs/{run.id}"})


async def list_runs(api: Api, request: Request, caller: Tenant) -> Response:
    """``GET /api/v1/pipelines/{id}/runs``: the pipeline's runs, oldest first, paged."""
    check_query(request, ("offset", "limit"))
    offset = query_int(request, "offset", 0, 0, _MAX_OFFSET)
    limit = query_int(request, "limit", 100, 1, 1000)
    pipeline = await tenant_pipeline(api, request, caller)
    runs = await api.hodei.store.list_runs(pipeline.id)
    return json_response(page([run_json(r) for r in runs[offset : offset + limit]], offset, limit))


async def get_run(api: Api, request: Request, caller: Tenant) -> Response:
    """``GET /api/v1/runs/{id}``."""
    check_query(request, ())
    return json_response(run_json(await tenant_run(api, request, caller)))


async def cancel_run(api: Api, request: Request, caller: Tenant) -> Response:
    """``POST /api/v1/runs/{id}/cancel``: cancel the run and its live jobs."""
    check_query(request, ())
    run = await tenant_run(api, request, caller)
    return json_response(run_json(await api.hodei.cancel_run(run.id)), 202)


def pipeline_endpoints() -> list[Endpoint]:
    """The endpoints of this module."""
    t = (Tenant,)
    return [
        Endpoint("/api/v1/pipelines", "POST", create_pipeline, t),
        Endpoint("/api/v1/pipelines", "GET", list_pipelines, t),
        Endpoint("/api/v1/pipelines/{id}", "GET", get_pipeline, t),
        Endpoint("/api/v1/pipelines/{id}", "DELETE", delete_pipeline, t),
        Endpoint("/api/v1/pipelines/{id}/runs", "POST", start_run, t),
        Endpoint("/api/v1/pipelines/{id}/runs", "GET", list_runs, t),
        Endpoint("/api/v1/runs/{id}", "GET", get_run, t),
        Endpoint("/api/v1/runs/{id}/cancel", "POST", cancel_run, t),
    ]
