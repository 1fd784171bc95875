"""Authentication and tenant isolation: a tenant sees only its own objects, each token only
opens its own doors, and tokens are kept as digests."""

from __future__ import annotations

import httpx
import pytest

from hodei_http._auth import Agent, Authenticator, Tenant, WorkerCaller
from hodei_http._errors import ApiError

from .conftest import ACME, AGENT, GLOBEX, Register, auth, make_settings
from .test_users import PIPELINE


async def test_requests_without_a_valid_token_are_401(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, auth("not-a-token"),
                    {"Authorization": "Bearer"}, auth("wrk-1.bad")):  # fmt: skip
        response = await client.get("/api/v1/jobs", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
    # the service endpoints need no token
    for path in ("/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"):
        assert (await client.get(path)).status_code == 200, path


async def test_a_tenant_sees_only_its_own(
    acme: httpx.AsyncClient, globex: httpx.AsyncClient, register: Register
) -> None:
    job = (await acme.post("/api/v1/jobs", json={"script": "true"})).json()
    pipeline = (await acme.post("/api/v1/pipelines", json=PIPELINE)).json()
    run = (await acme.post(f"/api/v1/pipelines/{pipeline['id']}/runs")).json()
    hidden = [
        ("GET", f"/api/v1/jobs/{job['id']}"),
        ("POST", f"/api/v1/jobs/{job['id']}/cancel"),
        ("GET", f"/api/v1/jobs/{job['id']}/logs"),
        ("GET", f"/api/v1/jobs/{job['id']}/logs/stream"),
        ("GET", f"/api/v1/pipelines/{pipeline['id']}"),
        ("DELETE", f"/api/v1/pipelines/{pipeline['id']}"),
        ("POST", f"/api/v1/pipelines/{pipeline['id']}/runs"),
        ("GET", f"/api/v1/pipelines/{pipeline['id']}/runs"),
        ("GET", f"/api/v1/runs/{run['id']}"),
        ("POST", f"/api/v1/runs/{run['id']}/cancel"),
    ]
    for method, path in hidden:
        response = await globex.request(method, path)
        assert response.status_code == 404, (method, path)
        # exactly what a missing object says: nothing tells that it exists
        missing = await globex.request(method, path.replace(job["id"], "job-nope"))
        if job["id"] in path:
            assert response.json()["error"]["message"] == missing.json()["error"][
                "message"
            ].replace("job-nope", job["id"])
    assert (await globex.get("/api/v1/jobs")).json()["items"] == []
    assert (await globex.get("/api/v1/jobs", params={"tenant": "acme"})).json()["items"] == []
    assert (await globex.get("/api/v1/pipelines")).json()["items"] == []
    # the owner still has everything
    assert (await acme.get(f"/api/v1/jobs/{job['id']}")).status_code == 200
    assert (await acme.get(f"/api/v1/runs/{run['id']}")).json()["state"] == "running"


def test_authenticator_identifies_each_kind_of_token() -> None:
    authenticator = Authenticator(make_settings())
    assert authenticator.identify(f"Bearer {ACME}") == Tenant("acme")
    assert authenticator.identify(f"bearer  {GLOBEX} ") == Tenant("globex")
    assert authenticator.identify(f"Bearer {AGENT}") == Agent()
    token = authenticator.worker_token("wrk-1")
    assert authenticator.identify(f"Bearer {token}") == WorkerCaller("wrk-1")
    # another worker's id with this mac is no token
    forged = "wrk-2." + token.partition(".")[2]
    with pytest.raises(ApiError) as info:
        authenticator.identify(f"Bearer {forged}")
    assert info.value.status == 401
    with pytest.raises(ApiError):
        authenticator.identify("Bearer wrk-1.ünïcode")


def test_worker_tokens_survive_a_restart_with_the_same_secret() -> None:
    token = Authenticator(make_settings()).worker_token("wrk-1")
    restarted = Authenticator(make_settings())
    assert restarted.identify(f"Bearer {token}") == WorkerCaller("wrk-1")
    rekeyed = Authenticator(make_settings(secret=b"k" * 32))
    with pytest.raises(ApiError):
        rekeyed.identify(f"Bearer {token}")


def test_only_digests_are_kept() -> None:
    settings = make_settings()
    for value in (settings.agent_token_sha256, *(t.token_sha256 for t in settings.tenants)):
        assert len(value) == 64 and value not in (ACME, GLOBEX, AGENT)
    assert ACME not in repr(settings) and settings.agent_token_sha256 not in repr(settings)
