"""The OpenAPI document: served, identical to docs/openapi.json, valid, and true to the routes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from openapi_spec_validator import validate
from starlette.applications import Starlette
from starlette.routing import Route

from hodei_http._api import Endpoint
from hodei_http._auth import Agent, Tenant, WorkerCaller
from hodei_http._openapi import openapi_document
from hodei_http._routes_agents import agent_endpoints
from hodei_http._routes_jobs import job_endpoints
from hodei_http._routes_pipelines import pipeline_endpoints
from hodei_http._routes_workers import worker_endpoints

DOCS = Path(__file__).parents[2] / "docs" / "openapi.json"
_SCHEMES = {Tenant: "tenantToken", Agent: "agentToken", WorkerCaller: "workerToken"}


async def test_served_document_is_docs_openapi_json(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    # regenerate with: python -m hodei_http._openapi > docs/openapi.json
    assert response.json() == json.loads(DOCS.read_text()), "docs/openapi.json is out of date"
    assert response.content == DOCS.read_bytes()


def test_the_document_is_valid_openapi() -> None:
    validate(openapi_document())


async def test_every_route_is_documented_with_its_security(app: Starlette) -> None:
    document = openapi_document()
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    served = {
        (route.path, method)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert documented == served
    endpoints: list[Endpoint] = [
        *job_endpoints(), *pipeline_endpoints(), *worker_endpoints(), *agent_endpoints(),
    ]  # fmt: skip
    for endpoint in endpoints:
        operation = document["paths"][endpoint.path][endpoint.method.lower()]
        schemes = {name for requirement in operation["security"] for name in requirement}
        assert schemes == {_SCHEMES[kind] for kind in endpoint.allow}, endpoint
        assert {"401", "403"} <= set(operation["responses"]), endpoint
