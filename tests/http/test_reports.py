"""The batched agent reports, ``POST /api/v1/workers/{id}/reports``: several attempts' starts,
output and ends in one request, each answered with the status and error its own endpoint
(start, logs, finish) would give."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.openapi.checks import JsonSchemaError
from schemathesis.specs.openapi.checks import response_schema_conformance

from hodei_core import Hodei, Job
from hodei_core.errors import StorageError

from .conftest import ACME, AGENT, Register, auth
from .test_agents import _poll, _submit

Headers = dict[str, str]


def _reports_path(worker_id: str) -> str:
    return f"/api/v1/workers/{worker_id}/reports"


async def _post(
    client: httpx.AsyncClient, worker_id: str, headers: Headers, reports: list[dict[str, Any]]
) -> httpx.Response:
    return await client.post(_reports_path(worker_id), json={"reports": reports}, headers=headers)


def _report(job_id: str, kind: str, attempt: int = 1, **fields: Any) -> dict[str, Any]:
    return {"job_id": job_id, "attempt": attempt, "type": kind, **fields}


def _chunk(seq: int, data: str, stream: str = "stdout", ts: float | None = None) -> dict[str, Any]:
    chunk: dict[str, Any] = {"seq": seq, "stream": stream, "data": data}
    if ts is not None:
        chunk["ts"] = ts
    return chunk


def _result_of(response: httpx.Response) -> dict[str, Any]:
    """The result a batch gives a report whose own endpoint answered ``response``."""
    if response.status_code == 200:
        return {"status": 200}
    return {"status": response.status_code, "error": response.json()["error"]}


async def _assigned(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register, jobs: int = 1
) -> tuple[str, Headers, list[str]]:
    """A worker with ``jobs`` jobs of acme assigned to it (acme may submit 3 a minute)."""
    worker_id, headers = await register(capacity={"slots": jobs})
    ids = [await _submit(acme) for _ in range(jobs)]
    assert (await _poll(client, worker_id, headers)).status_code == 200
    for job_id in ids:
        job = (await acme.get(f"/api/v1/jobs/{job_id}")).json()
        assert (job["state"], job["attempt"], job["worker_id"]) == ("assigned", 1, worker_id)
    return worker_id, headers, ids


async def _job(acme: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await acme.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


async def _log(acme: httpx.AsyncClient, job_id: str) -> list[tuple[int, str, str]]:
    """The job's log (current attempt) as the tenant reads it: ``(seq, stream, data)``."""
    response = await acme.get(f"/api/v1/jobs/{job_id}/logs", headers={"Accept": "application/json"})
    assert response.status_code == 200, response.text
    return [(c["seq"], c["stream"], c["data"]) for c in response.json()["chunks"]]


def _problems(response: httpx.Response) -> set[str]:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid"
    return {d["path"] for d in error["details"]}


async def test_start_logs_finish_of_one_attempt_in_one_batch(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register, hodei: Hodei
) -> None:
    worker_id, headers, (job_id,) = await _assigned(client, acme, register)
    now = hodei.clock()
    reports = [
        _report(job_id, "start"),
        _report(job_id, "logs", chunks=[_chunk(0, "one\n", ts=now),
                                        _chunk(1, "two\n", "stderr", ts=now)]),
        _report(job_id, "logs", chunks=[_chunk(2, "three\n")]),
        _report(job_id, "finish", exit_code=0, chunks=[_chunk(3, "four\n")]),
    ]  # fmt: skip
    response = await _post(client, worker_id, headers, reports)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    # in order: a start after the finish would have been refused (already_finished)
    assert response.json() == {"results": [{"status": 200}] * 4}
    job = await _job(acme, job_id)
    assert (job["state"], job["exit_code"], job["attempt"], job["failure"]) == (
        "succeeded", 0, 1, None,
    )  # fmt: skip
    assert job["started_at"] is not None and job["finished_at"] >= job["started_at"]
    assert await _log(acme, job_id) == [
        (0, "stdout", "one\n"), (1, "stderr", "two\n"), (2, "stdout", "three\n"),
        (3, "stdout", "four\n"),
    ]  # fmt: skip
    assert (await acme.get(f"/api/v1/jobs/{job_id}/logs")).text == "one\ntwo\nthree\nfour\n"


async def test_two_jobs_of_one_worker_in_one_batch(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register
) -> None:
    worker_id, headers, (first, second) = await _assigned(client, acme, register, jobs=2)
    reports = [
        _report(first, "start"),
        _report(second, "start"),
        _report(second, "logs", chunks=[_chunk(0, "second\n")]),
        _report(first, "logs", chunks=[_chunk(0, "first\n")]),
        _report(second, "finish", exit_code=3, chunks=[_chunk(1, "bye\n", "stderr")]),
        _report(first, "finish", exit_code=0),
    ]
    response = await _post(client, worker_id, headers, reports)
    assert response.status_code == 200, response.text
    assert response.json() == {"results": [{"status": 200}] * 6}
    one, two = await _job(acme, first), await _job(acme, second)
    assert (one["state"], one["exit_code"], one["failure"]) == ("succeeded", 0, None)
    assert (two["state"], two["exit_code"], two["failure"]) == ("failed", 3, "script_failure")
    assert await _log(acme, first) == [(0, "stdout", "first\n")]
    assert await _log(acme, second) == [(0, "stdout", "second\n"), (1, "stderr", "bye\n")]


async def test_refused_reports_do_not_stop_the_others(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register
) -> None:
    worker_id, headers, (job_id, other) = await _assigned(client, acme, register, jobs=2)
    reports = [
        _report(job_id, "start"),
        _report(other, "start", attempt=2),  # not the job's attempt
        _report("job-nope", "start"),
        _report("no/such", "finish", exit_code=0),
        _report("a.b", "logs", chunks=[_chunk(0, "x")]),
        _report(job_id, "logs", chunks=[_chunk(0, "after the refusals\n")]),
    ]
    response = await _post(client, worker_id, headers, reports)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == len(reports)
    assert results[0] == results[5] == {"status": 200}
    for result, (status, code) in zip(
        results[1:5],
        [(409, "stale_attempt"), (404, "not_found"), (404, "not_found"), (404, "not_found")],
        strict=True,
    ):
        assert result["status"] == status, result
        assert set(result["error"]) == {"code", "message", "details"}
        assert (result["error"]["code"], result["error"]["details"]) == (code, [])
        assert result["error"]["message"]
    assert "no/such" in results[3]["error"]["message"]
    # each is what the report's own endpoint answers
    stale = await client.post(f"/api/v1/jobs/{other}/start", json={"attempt": 2}, headers=headers)
    assert results[1] == _result_of(stale)
    missing = await client.post("/api/v1/jobs/job-nope/start", json={"attempt": 1}, headers=headers)
    assert results[2] == _result_of(missing)
    dotted = await client.post(
        "/api/v1/jobs/a.b/logs", json={"attempt": 1, "chunks": [_chunk(0, "x")]}, headers=headers
    )
    assert results[4] == _result_of(dotted)

    job = await _job(acme, job_id)
    assert job["state"] == "running"
    assert await _log(acme, job_id) == [(0, "stdout", "after the refusals\n")]
    untouched = await _job(acme, other)
    assert (untouched["state"], untouched["attempt"]) == ("assigned", 1)


async def test_reports_of_one_attempt_apply_in_order_and_a_resend_is_harmless(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register
) -> None:
    worker_id, headers, (job_id, reversed_id) = await _assigned(client, acme, register, jobs=2)
    reports = [
        _report(job_id, "start"),
        _report(job_id, "logs", chunks=[_chunk(0, "zero\n")]),
        _report(job_id, "finish", exit_code=0, chunks=[_chunk(1, "one\n")]),
        _report(job_id, "logs", chunks=[_chunk(2, "late\n")]),  # after the finish
        # another attempt, its end before its start
        _report(reversed_id, "finish", exit_code=0),
        _report(reversed_id, "start"),
        _report(reversed_id, "logs", chunks=[_chunk(0, "after\n")]),  # not stopped by the 409
    ]
    first = await _post(client, worker_id, headers, reports)
    assert first.status_code == 200, first.text
    results = first.json()["results"]
    assert results[:3] == [{"status": 200}] * 3
    assert results[4] == {"status": 200}
    # the start applied after the finish is refused, as /start refuses it
    assert results[5]["status"] == 409 and results[5]["error"]["code"] == "already_finished"
    late_start = await client.post(
        f"/api/v1/jobs/{reversed_id}/start", json={"attempt": 1}, headers=headers
    )
    assert results[5] == _result_of(late_start)
    # output after the finish gets what /logs answers for a finished job: 200 (it is kept)
    late_logs = await client.post(
        f"/api/v1/jobs/{job_id}/logs",
        json={"attempt": 1, "chunks": [_chunk(2, "late\n")]},
        headers=headers,
    )
    assert late_logs.status_code == 200, late_logs.text
    assert results[3] == _result_of(late_logs)

    job = await _job(acme, job_id)
    assert (job["state"], job["exit_code"]) == ("succeeded", 0)
    log = await _log(acme, job_id)
    assert log == [(0, "stdout", "zero\n"), (1, "stdout", "one\n"), (2, "stdout", "late\n")]
    assert (await _job(acme, reversed_id))["state"] == "succeeded"
    assert results[6] == {"status": 200}
    assert await _log(acme, reversed_id) == [(0, "stdout", "after\n")]

    # the whole batch again, as after a network error: nothing changes, nothing doubles
    again = await _post(client, worker_id, headers, reports)
    assert again.status_code == 200, again.text
    resent = again.json()["results"]
    finished_start = await client.post(
        f"/api/v1/jobs/{job_id}/start", json={"attempt": 1}, headers=headers
    )
    assert resent[0] == _result_of(finished_start)
    assert resent[0]["error"]["code"] == "already_finished"
    assert resent[1:] == [{"status": 200}] * 4 + [results[5], {"status": 200}]
    assert await _job(acme, job_id) == job
    assert await _log(acme, job_id) == log
    assert (await acme.get(f"/api/v1/jobs/{job_id}/logs")).text == "zero\none\nlate\n"
    assert await _log(acme, reversed_id) == [(0, "stdout", "after\n")]


async def test_invalid_batches_are_400_and_change_nothing(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register
) -> None:
    worker_id, headers, (job_id,) = await _assigned(client, acme, register)
    valid = _report(job_id, "start")
    chunk = _chunk(0, "x")
    cases: list[tuple[list[dict[str, Any]], set[str]]] = [
        (
            [
                valid,
                _report(job_id, "start", chunks=[chunk]),
                _report(job_id, "logs", chunks=[chunk], exit_code=0),
                _report(job_id, "logs", timed_out=True),
                _report(job_id, "start", cancelled=True),
                _report(job_id, "logs", error="no such program"),
                _report(job_id, "finish", exit_code=1, timed_out=True, chunks=[chunk]),  # fine
            ],
            {"reports[1].chunks", "reports[2].exit_code", "reports[3].timed_out",
             "reports[4].cancelled", "reports[5].error"},
        ),
        ([valid, _report(job_id, "begin")], {"reports[1].type"}),
        ([valid, _report(job_id, "start", bogus=1)], {"reports[1].bogus"}),
        ([valid, {"job_id": job_id, "type": "start"}], {"reports[1].attempt"}),
        ([valid, *[_report("job-nope", "start")] * 1000], {"reports"}),
    ]  # fmt: skip
    for reports, paths in cases:
        # compact, so that 1001 reports fit under the test server's 64 KiB body limit
        body = json.dumps({"reports": reports}, separators=(",", ":"))
        response = await client.post(
            _reports_path(worker_id),
            content=body,
            headers={**headers, "Content-Type": "application/json"},
        )
        assert _problems(response) == paths, (reports[1], response.text)
    extra = await client.post(
        _reports_path(worker_id), json={"reports": [valid], "more": []}, headers=headers
    )
    assert _problems(extra) == {"more"}
    query = await client.post(
        _reports_path(worker_id), params={"wait": 1}, json={"reports": [valid]}, headers=headers
    )
    assert query.status_code == 400, query.text
    text = await client.post(
        _reports_path(worker_id),
        content=json.dumps({"reports": [valid]}),
        headers={**headers, "Content-Type": "text/plain"},
    )
    assert text.status_code == 415, text.text
    job = await _job(acme, job_id)
    assert (job["state"], job["started_at"]) == ("assigned", None)  # nothing was applied
    assert await _log(acme, job_id) == []

    # 1000 is not too many
    body = json.dumps({"reports": [_report("job-nope", "start")] * 1000}, separators=(",", ":"))
    response = await client.post(
        _reports_path(worker_id),
        content=body,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text[:500]
    statuses = {r["status"] for r in response.json()["results"]}
    assert (len(response.json()["results"]), statuses) == (1000, {404})
    empty = await _post(client, worker_id, headers, [])
    assert (empty.status_code, empty.json()) == (200, {"results": []})


async def test_only_the_worker_itself_may_post_its_reports(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register
) -> None:
    worker_id, headers, (job_id,) = await _assigned(client, acme, register)
    other_id, other_headers = await register("w2")
    reports = [_report(job_id, "start")]
    for name, caller in (("another worker", other_headers), ("a tenant", auth(ACME)),
                         ("the agent token", auth(AGENT))):  # fmt: skip
        refused = await _post(client, worker_id, caller, reports)
        assert refused.status_code == 403, (name, refused.text)
        assert refused.json()["error"]["code"] == "forbidden", name
    assert (await _post(client, worker_id, {}, reports)).status_code == 401
    assert (await _job(acme, job_id))["state"] == "assigned"
    # on its own path, another worker's report about the job is refused by the fence
    stolen = await _post(client, other_id, other_headers, reports)
    assert stolen.status_code == 200, stolen.text
    (result,) = stolen.json()["results"]
    assert (result["status"], result["error"]["code"]) == (409, "stale_attempt")
    assert (await _job(acme, job_id))["state"] == "assigned"
    mine = await _post(client, worker_id, headers, reports)
    assert mine.json() == {"results": [{"status": 200}]}
    assert (await _job(acme, job_id))["state"] == "running"


async def test_the_answer_matches_the_served_schema(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register
) -> None:
    document = (await client.get("/api/v1/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(document)
    operations = {
        (op.method.upper(), op.path): op for op in (r.ok() for r in schema.get_all_operations())
    }
    operation = operations["POST", "/api/v1/workers/{id}/reports"]
    worker_id, headers, (job_id, other) = await _assigned(client, acme, register, jobs=2)
    reports = [
        _report(job_id, "start"),
        _report(job_id, "logs", chunks=[_chunk(0, "x\n")]),
        _report(job_id, "finish", exit_code=None, error="could not run"),
        _report(other, "start", attempt=2),
        _report("job-nope", "finish", exit_code=0, timed_out=False, cancelled=False),
    ]
    response = await _post(client, worker_id, headers, reports)
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == [200, 200, 200, 409, 404]
    case = operation.Case(
        path_parameters={"id": worker_id}, body={"reports": reports}, media_type="application/json"
    )
    case.validate_response(response, checks=[response_schema_conformance])
    # and the check is not a formality: an answer off the schema fails it
    wrong = httpx.Response(
        200, json={"results": [{"status": 200, "extra": True}]}, request=response.request
    )
    wrong.elapsed = response.elapsed
    with pytest.RaisesGroup(JsonSchemaError):
        case.validate_response(wrong, checks=[response_schema_conformance])


async def test_a_start_in_a_batch_is_measured_once(
    client: httpx.AsyncClient, acme: httpx.AsyncClient, register: Register, hodei: Hodei
) -> None:
    worker_id, headers, (job_id,) = await _assigned(client, acme, register)
    now = hodei.clock()
    reports = [
        _report(job_id, "start"),
        _report(job_id, "start"),  # a resend in the same batch
        _report(job_id, "logs", chunks=[_chunk(0, "a", ts=now), _chunk(1, "b", ts=now),
                                        _chunk(2, "c")]),
        _report("job-nope", "logs", chunks=[_chunk(0, "refused", ts=now)]),
    ]  # fmt: skip
    response = await _post(client, worker_id, headers, reports)
    assert [r["status"] for r in response.json()["results"]] == [200, 200, 200, 404]
    again = await _post(client, worker_id, headers, reports[:2])
    assert again.json() == {"results": [{"status": 200}] * 2}
    metrics = (await client.get("/metrics")).text
    assert "hodei_dispatch_latency_seconds_count 1\n" in metrics
    assert "hodei_start_latency_seconds_count 1\n" in metrics
    # each accepted chunk that came with a timestamp; not those of a refused report
    assert "hodei_log_lag_seconds_count 2\n" in metrics


async def test_a_backend_failure_fails_the_whole_batch(
    client: httpx.AsyncClient,
    acme: httpx.AsyncClient,
    register: Register,
    hodei: Hodei,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    worker_id, headers, (job_id, broken_id) = await _assigned(client, acme, register, jobs=2)
    store = hodei.store
    update_job = store.update_job
    failure: list[Exception] = [StorageError("database is down")]

    async def update(job_id: str, *args: Any, **kwargs: Any) -> tuple[Job, Job]:
        if job_id == broken_id:
            raise failure[0]
        return await update_job(job_id, *args, **kwargs)

    monkeypatch.setattr(store, "update_job", update)
    reports = [_report(broken_id, "start"), _report(job_id, "start"), _report("job-nope", "start")]
    with caplog.at_level(logging.CRITICAL, logger="hodei.http"):
        response = await _post(client, worker_id, headers, reports)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "unavailable" and "database" not in response.text
    assert response.headers["retry-after"] == "1"
    assert (await _job(acme, broken_id))["state"] == "assigned"
    assert (await _job(acme, job_id))["state"] == "running"  # what was applied stays applied

    # something unforeseen is a JSON 500, as on the other endpoints
    failure[0] = RuntimeError("a bug")
    with caplog.at_level(logging.CRITICAL, logger="hodei.http"):
        response = await _post(client, worker_id, headers, reports)
    assert response.status_code == 500, response.text
    assert response.json()["error"]["code"] == "internal"

    # the batch again once the store is back: every report is idempotent
    monkeypatch.setattr(store, "update_job", update_job)
    response = await _post(client, worker_id, headers, reports)
    assert [r["status"] for r in response.json()["results"]] == [200, 200, 404]
    assert (await _job(acme, broken_id))["state"] == "running"
    assert (await _job(acme, job_id))["state"] == "running"
