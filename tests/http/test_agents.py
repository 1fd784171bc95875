"""The agent protocol of DESIGN §6 over HTTP: registration, heartbeats, the long-poll, and
the fenced job reports."""

from __future__ import annotations

from typing import Any

import httpx
import trio
import trio.testing
from starlette.applications import Starlette

from hodei_core import Hodei, JobState

from .conftest import ACME, AGENT, Register, auth


async def _submit(acme: httpx.AsyncClient, **spec: Any) -> str:
    response = await acme.post("/api/v1/jobs", json={"script": "true", **spec})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


async def _poll(
    client: httpx.AsyncClient, worker_id: str, headers: dict[str, str], **body: Any
) -> httpx.Response:
    return await client.post(
        f"/api/v1/workers/{worker_id}/poll", params={"wait": 5}, json=body, headers=headers
    )


async def test_register_creates_then_updates_by_name(client: httpx.AsyncClient) -> None:
    body = {"name": "builder", "labels": ["linux", "x86"], "capacity": {"slots": 4, "cpu": 8},
            "version": "1.0", "hostname": "box"}  # fmt: skip
    first = await client.post("/api/v1/workers", json=body, headers=auth(AGENT))
    assert first.status_code == 201, first.text
    data = first.json()
    worker = data["worker"]
    assert first.headers["location"] == f"/api/v1/workers/{worker['id']}"
    assert (worker["name"], worker["labels"], worker["capacity"], worker["state"]) == (
        "builder", ["linux", "x86"], {"slots": 4, "cpu": 8.0, "memory_mb": None}, "online",
    )  # fmt: skip
    assert data["token"].startswith(worker["id"] + ".")
    assert (data["heartbeat_interval_s"], data["poll_wait_s"], data["lost_after_s"]) == (
        5.0, 25.0, 30.0,
    )  # fmt: skip
    again = await client.post(
        "/api/v1/workers", json={"name": "builder", "capacity": {"slots": 1}}, headers=auth(AGENT)
    )
    assert again.status_code == 200
    assert again.json()["worker"]["id"] == worker["id"]
    assert again.json()["worker"]["capacity"]["slots"] == 1
    assert again.json()["token"] == data["token"]  # the token belongs to the worker id


async def test_register_refuses_bad_bodies(client: httpx.AsyncClient) -> None:
    headers = auth(AGENT)
    cases: list[tuple[object, set[str]]] = [
        ({"name": "w", "slots": 2}, {"slots"}),
        ({"name": "w", "capacity": {"slots": 0, "gpus": 1}}, {"capacity.slots", "capacity.gpus"}),
        ({"name": "w", "labels": "linux"}, {"labels"}),
        ({"name": "bad name!"}, {"name"}),
        ({"labels": [1, ""]}, {"name", "labels[0]", "labels[1]"}),
        ([], {""}),
    ]
    for body, paths in cases:
        response = await client.post("/api/v1/workers", json=body, headers=headers)
        assert response.status_code == 400, (body, response.text)
        assert {d["path"] for d in response.json()["error"]["details"]} == paths, body


async def test_poll_wakes_at_once_on_assignment(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register
) -> None:
    worker_id, headers = await register()
    answers: list[httpx.Response] = []
    async with trio.open_nursery() as nursery:

        async def poll() -> None:
            answers.append(await _poll(client, worker_id, headers))

        nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()  # the poll waits on the bus now
        start = trio.current_time()
        job_id = await _submit(acme, secrets={"KEY": "v"})
    assert trio.current_time() - start < 0.5
    (answer,) = answers
    assert answer.status_code == 200, answer.text
    instructions = answer.json()
    assert [j["id"] for j in instructions["jobs"]] == [job_id]
    job = instructions["jobs"][0]
    assert (job["state"], job["attempt"], job["worker_id"]) == ("assigned", 1, worker_id)
    assert job["spec"]["secrets"] == {"KEY": "v"}  # the worker needs them in clear
    assert (instructions["cancel"], instructions["drain"]) == ([], False)
    # a job the worker already runs is not announced again
    running = {"running": [{"job_id": job_id, "attempt": 1}]}
    quiet = await client.post(
        f"/api/v1/workers/{worker_id}/poll", params={"wait": 0}, json=running, headers=headers
    )
    assert quiet.status_code == 204 and quiet.content == b""


async def test_poll_answers_204_after_the_wait(
    autojump_clock: trio.testing.MockClock, client: httpx.AsyncClient, register: Register
) -> None:
    worker_id, headers = await register()
    start = trio.current_time()
    response = await client.post(f"/api/v1/workers/{worker_id}/poll?wait=25", headers=headers)
    assert response.status_code == 204
    assert 25 <= trio.current_time() - start < 26
    # a longer wait than the server grants is cut to its cap
    start = trio.current_time()
    await client.post(f"/api/v1/workers/{worker_id}/poll?wait=3600", headers=headers)
    assert 60 <= trio.current_time() - start < 61


async def test_start_logs_finish(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register, hodei: Hodei
) -> None:
    worker_id, headers = await register()
    job_id = await _submit(acme)
    assert (await _poll(client, worker_id, headers)).status_code == 200
    started = await client.post(
        f"/api/v1/jobs/{job_id}/start", json={"attempt": 1}, headers=headers
    )
    assert started.status_code == 200, started.text
    assert started.json()["state"] == "running"
    resent = await client.post(f"/api/v1/jobs/{job_id}/start", json={"attempt": 1}, headers=headers)
    assert resent.status_code == 200  # a resend after a network error changes nothing

    chunks = [{"seq": 0, "stream": "stdout", "data": "one\n", "ts": hodei.clock()},
              {"seq": 1, "stream": "stderr", "data": "two\n", "ts": hodei.clock()}]  # fmt: skip
    logged = await client.post(
        f"/api/v1/jobs/{job_id}/logs", json={"attempt": 1, "chunks": chunks}, headers=headers
    )
    assert logged.status_code == 200, logged.text
    assert logged.json() == {"job_id": job_id, "attempt": 1, "received": 2}
    changed = [{**chunks[0], "data": "ONE\n"}]  # a resent seq is ignored, whatever it says
    await client.post(
        f"/api/v1/jobs/{job_id}/logs", json={"attempt": 1, "chunks": changed}, headers=headers
    )
    last = [{"seq": 2, "stream": "stdout", "data": "three\n"}]
    body = {"attempt": 1, "exit_code": 0, "log_chunks": last}
    finished = await client.post(f"/api/v1/jobs/{job_id}/finish", json=body, headers=headers)
    assert finished.status_code == 200, finished.text
    assert (finished.json()["state"], finished.json()["exit_code"]) == ("succeeded", 0)
    again = await client.post(f"/api/v1/jobs/{job_id}/finish", json=body, headers=headers)
    assert again.status_code == 200 and again.json() == finished.json()
    assert (await acme.get(f"/api/v1/jobs/{job_id}/logs")).text == "one\ntwo\nthree\n"

    metrics = (await client.get("/metrics")).text
    assert "hodei_dispatch_latency_seconds_count 1\n" in metrics
    assert "hodei_start_latency_seconds_count 1\n" in metrics
    # each chunk that arrives with a timestamp is counted (the resend too, not the last one)
    assert "hodei_log_lag_seconds_count 3\n" in metrics


async def test_outcomes(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register
) -> None:
    worker_id, headers = await register(capacity={"slots": 3})
    ids = [await _submit(acme) for _ in range(3)]
    assert (await _poll(client, worker_id, headers)).status_code == 200
    reports = [
        {"attempt": 1, "exit_code": 3},
        {"attempt": 1, "error": "no such program"},
        {"attempt": 1, "exit_code": None, "timed_out": True},
    ]
    states = []
    for job_id, report in zip(ids, reports, strict=True):
        response = await client.post(f"/api/v1/jobs/{job_id}/finish", json=report, headers=headers)
        assert response.status_code == 200, response.text
        states.append((response.json()["state"], response.json()["failure"]))
    assert states == [
        ("failed", "script_failure"),
        ("failed", "internal"),
        ("timed_out", "timeout"),
    ]


async def test_stale_attempt_is_409(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register
) -> None:
    worker_id, headers = await register()
    job_id = await _submit(acme, retries=1)
    await _poll(client, worker_id, headers)
    await client.post(f"/api/v1/jobs/{job_id}/start", json={"attempt": 1}, headers=headers)
    failed = await client.post(
        f"/api/v1/jobs/{job_id}/finish", json={"attempt": 1, "exit_code": 1}, headers=headers
    )
    assert (failed.json()["state"], failed.json()["attempt"]) == ("queued", 2)  # retried
    for path, body in (
        ("start", {"attempt": 1}),
        ("logs", {"attempt": 1, "chunks": [{"seq": 9, "stream": "stdout", "data": "late"}]}),
        ("finish", {"attempt": 1, "exit_code": 0}),
    ):
        response = await client.post(f"/api/v1/jobs/{job_id}/{path}", json=body, headers=headers)
        assert response.status_code == 409, (path, response.text)
        assert response.json()["error"]["code"] == "stale_attempt"
    missing = await client.post("/api/v1/jobs/job-nope/start", json={"attempt": 1}, headers=headers)
    assert missing.status_code == 404


async def test_cancel_reaches_the_worker(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register
) -> None:
    worker_id, headers = await register()
    job_id = await _submit(acme)
    await _poll(client, worker_id, headers)
    await client.post(f"/api/v1/jobs/{job_id}/start", json={"attempt": 1}, headers=headers)
    running = {"running": [{"job_id": job_id, "attempt": 1}]}
    answers: list[httpx.Response] = []
    async with trio.open_nursery() as nursery:

        async def poll() -> None:
            answers.append(await _poll(client, worker_id, headers, **running))

        nursery.start_soon(poll)
        await trio.testing.wait_all_tasks_blocked()
        assert (await acme.post(f"/api/v1/jobs/{job_id}/cancel")).json()["state"] == "cancelling"
    assert answers[0].json()["cancel"] == [{"job_id": job_id, "attempt": 1}]
    beat = await client.post(
        f"/api/v1/workers/{worker_id}/heartbeat", json=running, headers=headers
    )
    assert beat.json() == {
        "cancel": [{"job_id": job_id, "attempt": 1}], "drain": False, "heartbeat_interval_s": 5.0,
    }  # fmt: skip
    done = await client.post(
        f"/api/v1/jobs/{job_id}/finish",
        json={"attempt": 1, "exit_code": -15, "cancelled": True},
        headers=headers,
    )
    assert (done.json()["state"], done.json()["failure"]) == ("cancelled", "cancelled")


async def test_heartbeat_drain_and_leave(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register, hodei: Hodei
) -> None:
    worker_id, headers = await register()
    beat = await client.post(f"/api/v1/workers/{worker_id}/heartbeat", headers=headers)
    assert beat.status_code == 200 and beat.json()["drain"] is False
    # a job it says it runs that is not its own is to be stopped
    ghost = {"running": [{"job_id": "job-ghost", "attempt": 1}]}
    beat = await client.post(f"/api/v1/workers/{worker_id}/heartbeat", json=ghost, headers=headers)
    assert beat.json()["cancel"] == [{"job_id": "job-ghost", "attempt": 1}]

    job_id = await _submit(acme, retries=1)
    await _poll(client, worker_id, headers)
    assert (await acme.post(f"/api/v1/workers/{worker_id}/drain")).status_code == 202
    beat = await client.post(f"/api/v1/workers/{worker_id}/heartbeat", headers=headers)
    assert beat.json()["drain"] is True
    assert (await _poll(client, worker_id, headers)).json()["drain"] is True

    left = await client.post(f"/api/v1/workers/{worker_id}/leave", headers=headers)
    assert left.status_code == 200 and left.json()["state"] == "offline"
    job = await hodei.get(job_id)
    assert (job.state, job.attempt) == (JobState.QUEUED, 2)  # back in the queue
    bad = await client.post(f"/api/v1/workers/{worker_id}/leave", json={"x": 1}, headers=headers)
    assert bad.status_code == 400


async def test_worker_tokens_are_scoped(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register
) -> None:
    first, first_headers = await register("w1")
    _second, second_headers = await register("w2")
    job_id = await _submit(acme)
    # the job goes to one of them; find which
    await _poll(client, first, first_headers)
    owner = (await acme.get(f"/api/v1/jobs/{job_id}")).json()["worker_id"]
    other_headers = second_headers if owner == first else first_headers
    owner_headers = first_headers if owner == first else second_headers

    for path in ("heartbeat", "poll", "leave"):
        refused = await client.post(f"/api/v1/workers/{owner}/{path}?wait=0", headers=other_headers)
        assert refused.status_code == 403, path
        assert refused.json()["error"]["code"] == "forbidden"
    # another worker's report about the job is refused by the fence
    stolen = await client.post(
        f"/api/v1/jobs/{job_id}/start", json={"attempt": 1}, headers=other_headers
    )
    assert stolen.status_code == 409
    ok = await client.post(
        f"/api/v1/jobs/{job_id}/start", json={"attempt": 1}, headers=owner_headers
    )
    assert ok.status_code == 200

    # each kind of token only opens its own doors
    assert (await client.get("/api/v1/jobs", headers=owner_headers)).status_code == 403
    assert (await client.get("/api/v1/workers", headers=owner_headers)).status_code == 403
    agent_beat = await client.post(f"/api/v1/workers/{owner}/heartbeat", headers=auth(AGENT))
    assert agent_beat.status_code == 403
    tenant_beat = await client.post(f"/api/v1/workers/{owner}/heartbeat", headers=auth(ACME))
    assert tenant_beat.status_code == 403
    tenant_register = await client.post("/api/v1/workers", json={"name": "x"}, headers=auth(ACME))
    assert tenant_register.status_code == 403
    forged = auth(f"{owner}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    assert (
        await client.post(f"/api/v1/workers/{owner}/heartbeat", headers=forged)
    ).status_code == 401


async def test_a_large_fleet_is_asked_to_heartbeat_less_often(
    client: httpx.AsyncClient, app: Starlette, register: Register
) -> None:
    worker_id, headers = await register()

    async def pace() -> float:
        beat = await client.post(f"/api/v1/workers/{worker_id}/heartbeat", headers=headers)
        assert beat.status_code == 200
        interval: float = beat.json()["heartbeat_interval_s"]
        return interval

    metrics = app.state.api.metrics
    assert await pace() == 5.0  # a small fleet keeps the configured pace
    metrics.polls_waiting = 400  # agents long-polling this server: 50 beats a second at 8 s
    assert await pace() == 8.0
    again = await client.post("/api/v1/workers", json={"name": "w1"}, headers=auth(AGENT))
    assert again.json()["heartbeat_interval_s"] == 8.0  # also what a registration is told
    metrics.polls_waiting = 100_000  # but never so slow that a worker is lost between beats
    assert await pace() == 10.0  # a third of lost_after_s
