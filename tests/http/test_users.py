"""The users' side of DESIGN §6 over HTTP: pipelines, runs, jobs, logs, workers, service."""

from __future__ import annotations

import httpx

from hodei_core import Hodei, LogChunk, Outcome, Stream

from .conftest import AGENT, Register, auth

PIPELINE = {
    "name": "hello",
    "steps": [
        {"name": "build", "script": "echo building"},
        {"name": "test", "command": ["./run-tests"], "depends_on": ["build"],
         "secrets": {"API_KEY": "s3cret"}, "labels": ["linux"], "timeout_s": 600},
    ],
}  # fmt: skip

YAML_PIPELINE = """\
name: hello
steps:
  - name: build
    script: echo building
  - name: test
    script: ./run-tests.sh
    depends_on: [build]
    env: {LEVEL: full}
"""


async def test_create_get_list_delete_pipeline(acme: httpx.AsyncClient) -> None:
    created = await acme.post("/api/v1/pipelines", json=PIPELINE)
    assert created.status_code == 201, created.text
    pipeline = created.json()
    assert created.headers["location"] == f"/api/v1/pipelines/{pipeline['id']}"
    assert pipeline["tenant"] == "acme" and pipeline["name"] == "hello"
    build, test = pipeline["steps"]
    assert build == {
        "name": "build", "depends_on": [], "command": None, "script": "echo building",
        "env": {}, "secrets": {}, "labels": [], "resources": {"cpu": 0.0, "memory_mb": 0},
        "timeout_s": None, "retries": 0, "priority": 0,
    }  # fmt: skip
    assert test["secrets"] == {"API_KEY": "***"}  # secret values never leave the server
    assert (test["depends_on"], test["labels"], test["timeout_s"]) == (["build"], ["linux"], 600)

    assert (await acme.get(f"/api/v1/pipelines/{pipeline['id']}")).json() == pipeline
    listed = (await acme.get("/api/v1/pipelines")).json()
    assert listed == {"items": [pipeline], "next_offset": None}

    assert (await acme.delete(f"/api/v1/pipelines/{pipeline['id']}")).status_code == 204
    gone = await acme.get(f"/api/v1/pipelines/{pipeline['id']}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


async def test_pipeline_from_yaml(acme: httpx.AsyncClient) -> None:
    response = await acme.post(
        "/api/v1/pipelines", content=YAML_PIPELINE, headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code == 201, response.text
    steps = response.json()["steps"]
    assert [s["name"] for s in steps] == ["build", "test"]
    assert steps[1]["env"] == {"LEVEL": "full"}
    # without a content type the body is read as YAML, which JSON is too
    plain = await acme.post("/api/v1/pipelines", content=YAML_PIPELINE)
    assert plain.status_code == 201


async def test_invalid_pipeline_lists_every_problem(acme: httpx.AsyncClient) -> None:
    bad = {
        "name": "",
        "steps": [
            {"name": "a", "script": "x", "depends_on": ["nope"]},
            {"name": "a", "script": "y", "timeout_s": -1},
            {"name": "b", "script": "z", "depends_on": ["c"], "retrys": 2},
            {"name": "c", "script": "z", "depends_on": ["b"]},
        ],
    }
    response = await acme.post("/api/v1/pipelines", json=bad)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    paths = {d["path"] for d in error["details"]}
    assert {
        "steps[0].depends_on[0]",
        "steps[1].name",
        "steps[1].timeout_s",
        "steps[2].retrys",
    } <= paths
    assert any("cycle" in d["message"] for d in error["details"])
    assert any("did you mean 'retries'" in d["message"] for d in error["details"])


async def test_invalid_yaml_pipeline_lists_every_problem(acme: httpx.AsyncClient) -> None:
    document = """\
name: broken
steps:
  - name: build
    script: make
    depends_on: [tset]
  - name: test
    script: make test
    timeout_s: soon
    env: {DEBUG: yes}
"""
    response = await acme.post(
        "/api/v1/pipelines", content=document, headers={"Content-Type": "application/x-yaml"}
    )
    assert response.status_code == 400
    details = {d["path"]: d["message"] for d in response.json()["error"]["details"]}
    assert set(details) == {"steps[0].depends_on[0]", "steps[1].timeout_s", "steps[1].env.DEBUG"}
    assert "quote the value" in details["steps[1].env.DEBUG"]


async def test_invalid_yaml_pipeline(acme: httpx.AsyncClient) -> None:
    headers = {"Content-Type": "text/yaml"}
    broken = await acme.post("/api/v1/pipelines", content="name: [unclosed", headers=headers)
    assert broken.status_code == 400
    assert "line 1" in broken.json()["error"]["details"][0]["message"]
    duplicate = "name: x\nname: y\nsteps: []\n"
    response = await acme.post("/api/v1/pipelines", content=duplicate, headers=headers)
    assert response.status_code == 400 and "duplicate key" in response.text
    empty = await acme.post("/api/v1/pipelines", content="", headers=headers)
    assert empty.status_code == 400 and "empty" in empty.text


async def test_runs(acme: httpx.AsyncClient, hodei: Hodei) -> None:
    pipeline = (await acme.post("/api/v1/pipelines", json=PIPELINE)).json()
    started = await acme.post(f"/api/v1/pipelines/{pipeline['id']}/runs")
    assert started.status_code == 202, started.text
    run = started.json()
    assert started.headers["location"] == f"/api/v1/runs/{run['id']}"
    assert (run["pipeline_id"], run["pipeline_name"], run["tenant"], run["state"]) == (
        pipeline["id"], "hello", "acme", "running",
    )  # fmt: skip
    assert [(s["name"], s["state"]) for s in run["steps"]] == [
        ("build", "running"),
        ("test", "waiting"),
    ]
    assert (await acme.get(f"/api/v1/runs/{run['id']}")).json() == run
    runs = (await acme.get(f"/api/v1/pipelines/{pipeline['id']}/runs")).json()
    assert [r["id"] for r in runs["items"]] == [run["id"]]

    cancelled = await acme.post(f"/api/v1/runs/{run['id']}/cancel")
    assert cancelled.status_code == 202
    run = await hodei.wait_run(run["id"], timeout_s=5)
    assert (await acme.get(f"/api/v1/runs/{run.id}")).json()["state"] == "cancelled"
    # the build step's job is listed under the run, cancelled
    jobs = (await acme.get("/api/v1/jobs", params={"run": run.id})).json()["items"]
    assert [(j["step"], j["state"]) for j in jobs] == [("build", "cancelled")]


async def test_submit_get_list_cancel_job(acme: httpx.AsyncClient) -> None:
    spec = {"command": ["make", "test"], "env": {"LEVEL": 3}, "secrets": {"TOKEN": "t"},
            "labels": ["linux"], "resources": {"cpu": 1, "memory_mb": 256}, "timeout_s": 30,
            "retries": 1, "priority": 5, "name": "unit"}  # fmt: skip
    response = await acme.post("/api/v1/jobs", json=spec)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert (job["state"], job["attempt"], job["tenant"], job["name"]) == (
        "queued", 1, "acme", "unit",
    )  # fmt: skip
    assert job["spec"]["env"] == {"LEVEL": "3"} and job["spec"]["secrets"] == {"TOKEN": "***"}
    assert job["spec"]["resources"] == {"cpu": 1.0, "memory_mb": 256}
    assert (await acme.get(f"/api/v1/jobs/{job['id']}")).json() == job

    other = (await acme.post("/api/v1/jobs", json={"script": "true"})).json()
    listed = (await acme.get("/api/v1/jobs")).json()
    assert [j["id"] for j in listed["items"]] == [job["id"], other["id"]]
    first = (await acme.get("/api/v1/jobs", params={"limit": 1})).json()
    assert [j["id"] for j in first["items"]] == [job["id"]] and first["next_offset"] == 1
    second = (await acme.get("/api/v1/jobs", params={"offset": 1, "limit": 1})).json()
    assert [j["id"] for j in second["items"]] == [other["id"]]

    cancelled = await acme.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 202
    assert (cancelled.json()["state"], cancelled.json()["failure"]) == ("cancelled", "cancelled")
    again = await acme.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_finished"
    by_state = (await acme.get("/api/v1/jobs", params={"state": "cancelled"})).json()
    assert [j["id"] for j in by_state["items"]] == [job["id"]]
    both = (await acme.get("/api/v1/jobs?state=queued,cancelled")).json()
    assert len(both["items"]) == 2
    mine = (await acme.get("/api/v1/jobs", params={"tenant": "acme"})).json()
    assert len(mine["items"]) == 2


async def test_bad_job_spec_is_400_with_every_problem(acme: httpx.AsyncClient) -> None:
    response = await acme.post(
        "/api/v1/jobs", json={"command": "make test", "timeout_s": "soon", "colour": "red"}
    )
    assert response.status_code == 400
    details = response.json()["error"]["details"]
    assert {d["path"] for d in details} == {"command", "timeout_s", "colour"}
    assert "use 'script'" in next(d["message"] for d in details if d["path"] == "command")
    empty = await acme.post("/api/v1/jobs", json={})
    assert empty.status_code == 400
    assert "set 'command'" in empty.json()["error"]["details"][0]["message"]


async def test_quota_exceeded_is_429_with_retry_after(acme: httpx.AsyncClient) -> None:
    for _ in range(3):  # acme may submit 3 jobs a minute
        assert (await acme.post("/api/v1/jobs", json={"script": "true"})).status_code == 202
    refused = await acme.post("/api/v1/jobs", json={"script": "true"})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "quota_exceeded"
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 60


async def test_logs_as_text_and_json(
    acme: httpx.AsyncClient, hodei: Hodei, register: Register
) -> None:
    worker_id, _ = await register()
    job_id = (await acme.post("/api/v1/jobs", json={"script": "true"})).json()["id"]
    await hodei.scheduler.schedule_once()
    await hodei.orchestrator.start(worker_id, job_id, 1)
    chunks = [
        LogChunk(0, Stream.STDOUT, "hello\n", 1.0),
        LogChunk(1, Stream.STDERR, "oops\n", 2.0),
        LogChunk(2, Stream.STDOUT, "bye\n", 3.0),
    ]
    await hodei.orchestrator.append_logs(worker_id, job_id, 1, chunks)

    text = await acme.get(f"/api/v1/jobs/{job_id}/logs")
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert text.text == "hello\noops\nbye\n"
    assert (text.headers["hodei-attempt"], text.headers["hodei-next-offset"]) == ("1", "3")
    tail = await acme.get(f"/api/v1/jobs/{job_id}/logs", params={"offset": 1, "limit": 1})
    assert tail.text == "oops\n" and tail.headers["hodei-next-offset"] == "2"

    data = (
        await acme.get(f"/api/v1/jobs/{job_id}/logs", headers={"Accept": "application/json"})
    ).json()
    assert data["job_id"] == job_id and data["attempt"] == 1 and data["next_offset"] == 3
    assert data["state"] == "running"
    assert data["chunks"][1] == {"seq": 1, "stream": "stderr", "data": "oops\n", "ts": 2.0}
    await hodei.orchestrator.finish(worker_id, job_id, 1, Outcome(0))
    none_yet = await acme.get(f"/api/v1/jobs/{job_id}/logs", params={"attempt": 2})
    assert none_yet.text == ""


async def test_workers_list_get_drain(
    acme: httpx.AsyncClient, client: httpx.AsyncClient, register: Register
) -> None:
    first, _ = await register("w1", labels=["linux"], capacity={"slots": 2})
    second, _ = await register("w2")
    listed = (await acme.get("/api/v1/workers")).json()
    assert [w["id"] for w in listed["items"]] == [first, second]
    worker = (await acme.get(f"/api/v1/workers/{first}")).json()
    assert (worker["name"], worker["labels"], worker["capacity"]["slots"], worker["state"]) == (
        "w1", ["linux"], 2, "online",
    )  # fmt: skip
    drained = await acme.post(f"/api/v1/workers/{first}/drain")
    assert drained.status_code == 202 and drained.json()["state"] == "draining"
    online = (await acme.get("/api/v1/workers", params={"state": "online"})).json()
    assert [w["id"] for w in online["items"]] == [second]
    # the agent token (an operator's) may look at the fleet too
    fleet = await client.get("/api/v1/workers", headers=auth(AGENT))
    assert fleet.status_code == 200 and len(fleet.json()["items"]) == 2
    missing = await acme.get("/api/v1/workers/wrk-nope")
    assert missing.status_code == 404


async def test_service_endpoints(client: httpx.AsyncClient, acme: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready", "bus": "up"}
    await acme.post("/api/v1/jobs", json={"script": "true"})
    metrics = await client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "hodei_queue_length 1\n" in metrics.text
    assert 'hodei_jobs{state="queued"} 1\n' in metrics.text
    assert 'hodei_workers{state="online"} 0\n' in metrics.text
    assert "# TYPE hodei_dispatch_latency_seconds histogram" in metrics.text
    assert "# TYPE hodei_log_lag_seconds histogram" in metrics.text


async def test_unknown_route_and_method_are_json(acme: httpx.AsyncClient) -> None:
    missing = await acme.get("/api/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = await acme.put("/api/v1/jobs")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["allow"]
