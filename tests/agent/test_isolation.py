"""Tenant isolation and token scoping over a real socket: ``hodei server`` with two tenants,
one real agent, and callers holding each kind of token."""

from __future__ import annotations

import httpx

from ._cluster import AGENT, GLOBEX, Cluster

_PIPELINE = {"name": "build", "steps": [{"name": "only", "script": "echo built"}]}


async def test_a_tenant_sees_and_touches_only_its_own(cluster: Cluster) -> None:
    await cluster.server()
    await cluster.agent("iso-a")
    acme = cluster.users
    job_id = await cluster.submit({"script": "echo acme-secret-output"})
    assert (await cluster.finished(job_id))["state"] == "succeeded"
    pipeline = (await acme.post("/api/v1/pipelines", json=_PIPELINE)).json()
    run = (await acme.post(f"/api/v1/pipelines/{pipeline['id']}/runs")).json()

    async with httpx.AsyncClient(
        base_url=cluster.url, headers={"Authorization": f"Bearer {GLOBEX}"}, timeout=10
    ) as globex:
        for method, path in [
            ("GET", f"/api/v1/jobs/{job_id}"),
            ("GET", f"/api/v1/jobs/{job_id}/logs"),
            ("GET", f"/api/v1/jobs/{job_id}/logs/stream"),
            ("POST", f"/api/v1/jobs/{job_id}/cancel"),
            ("GET", f"/api/v1/pipelines/{pipeline['id']}"),
            ("POST", f"/api/v1/pipelines/{pipeline['id']}/runs"),
            ("DELETE", f"/api/v1/pipelines/{pipeline['id']}"),
            ("GET", f"/api/v1/runs/{run['id']}"),
            ("POST", f"/api/v1/runs/{run['id']}/cancel"),
        ]:
            answer = await globex.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
            assert "acme-secret-output" not in answer.text
        assert (await globex.get("/api/v1/jobs")).json()["items"] == []
        assert (await globex.get("/api/v1/pipelines")).json()["items"] == []
        # its own work is its own
        own = await globex.post("/api/v1/jobs", json={"script": "true"})
        assert own.status_code == 202
        assert [j["id"] for j in (await globex.get("/api/v1/jobs")).json()["items"]] == [
            own.json()["id"]
        ]

    # the owner still has everything, untouched
    assert (await acme.get(f"/api/v1/pipelines/{pipeline['id']}")).status_code == 200
    assert (await acme.get(f"/api/v1/jobs/{job_id}/logs")).text == "acme-secret-output\n"


async def test_agent_and_worker_tokens_open_no_tenant_calls(cluster: Cluster) -> None:
    await cluster.server()
    await cluster.agent("iso-b")
    job_id = await cluster.submit({"script": "true"})
    worker = await cluster.worker("iso-b", "online")
    registered = await cluster.users.post(
        "/api/v1/workers",
        json={"name": "iso-token", "labels": [], "capacity": {"slots": 1}},
        headers={"Authorization": f"Bearer {AGENT}"},
    )
    assert registered.status_code in (200, 201), registered.text
    worker_token = registered.json()["token"]
    for token in (AGENT, worker_token):
        caller = {"Authorization": f"Bearer {token}"}
        for method, path in [
            ("GET", f"/api/v1/jobs/{job_id}"),
            ("POST", "/api/v1/jobs"),
            ("GET", "/api/v1/pipelines"),
        ]:
            answer = await cluster.users.request(method, path, headers=caller, json={})
            assert answer.status_code == 403, (token, method, path, answer.text)
    # and a tenant's token opens no worker's calls
    answer = await cluster.users.post(f"/api/v1/workers/{worker['id']}/heartbeat", json={})
    assert answer.status_code == 403, answer.text
