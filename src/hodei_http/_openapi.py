"""The OpenAPI 3.1 document of the server, built in code and served at
``/api/v1/openapi.json``; ``docs/openapi.json`` is the same document (a test checks), written
by ``python -m hodei_http._openapi > docs/openapi.json``.
"""

from __future__ import annotations

import json
from typing import Any

from ._openapi_schemas import SCHEMAS, ref

__all__ = ["openapi_document"]

Spec = dict[str, Any]

_DESCRIPTION = """\
The HTTP API of Hodei Pipelines. JSON bodies; timestamps are float seconds since
the Unix epoch; ids are strings; enums are lower-case strings.

**Errors** are always `{"error": {"code", "message", "details"}}`; `details` lists each
validation problem with its `path` (e.g. `steps[2].depends_on[0]`).

**Authentication** (`Authorization: Bearer <token>`):
- *tenant* API tokens (configured per tenant): the users' endpoints; a tenant sees and touches
  only its own pipelines, runs, jobs and logs (another tenant's are 404). The fleet
  (`/api/v1/workers` GET and drain) is shared: every tenant may see and drain it.
- the *agent* registration token: `POST /api/v1/workers` (and the fleet endpoints).
- *worker* tokens, returned by registration: a worker's own calls only (another worker's
  path is 403). A worker token stays valid across server restarts while the server's secret
  (or configured agent token) is unchanged; on 401 an agent registers again (same name, same
  worker id), and on 404 for its own worker too.

**Agent protocol** (HWP over HTTP): register → loop { `poll` (long-poll, 200 with
`Instructions` or 204) → for each job: `start` {attempt} → `logs` {attempt, chunks} (batches,
`seq` counting 0, 1, 2… per attempt, resends ignored) → `finish` {attempt, exit_code…,
log_chunks} }, `heartbeat` every `heartbeat_interval_s` with the attempts it runs (the answer
names attempts to stop, whether to drain, and the pace from now on), `leave` when drained. A
409 on a job report (`stale_attempt`, `already_finished`) or a 404 means the attempt is no
longer this worker's: stop it and drop its results. Resending any report after a network
error is safe. `reports` carries several reports (of several attempts) in one request, and
answers each with the status and error its own endpoint would give.
"""


def _error(description: str) -> Spec:
    return {"description": description, "content": {"application/json": {"schema": ref("Error")}}}


def _json(description: str, schema: str) -> Spec:
    return {"description": description, "content": {"application/json": {"schema": ref(schema)}}}


_ERRORS = {
    "400": _error("invalid request: bad query parameter or body, with every problem"),
    "401": _error("missing or unknown token"),
    "403": _error("this token may not call this endpoint"),
    "500": _error("internal server error (a bug: never the client's fault)"),
    "503": _error("the store or the bus is unavailable; retry"),
}
_BODY_ERRORS = {
    "413": _error("the body is larger than the server's limit"),
    "415": _error("unsupported content type"),
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_PAGING = [
    {
        "name": "offset",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1, "default": 0},
    },
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    },
]
_TENANT: list[Spec] = [{"tenantToken": []}]
_FLEET: list[Spec] = [{"tenantToken": []}, {"agentToken": []}]
_WORKER: list[Spec] = [{"workerToken": []}]


def _op(
    op_id: str,
    summary: str,
    tag: str,
    responses: Spec,
    *,
    security: list[Spec],
    parameters: list[Spec] | None = None,
    body: Spec | None = None,
    description: str = "",
    not_found: bool = True,
    conflict: str | None = None,
) -> Spec:
    answers = {**responses, **_ERRORS}
    if not_found:
        answers["404"] = _error("no such object (or not the caller's)")
    if body is not None:
        answers.update(_BODY_ERRORS)
    if conflict is not None:
        answers["409"] = _error(conflict)
    operation: Spec = {
        "operationId": op_id,
        "summary": summary,
        "tags": [tag],
        "security": security,
        "responses": dict(sorted(answers.items())),
    }
    if description:
        operation["description"] = description
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    return operation


def _body(schema: str, *, required: bool = True, yaml: bool = False) -> Spec:
    content = {"application/json": {"schema": ref(schema)}}
    if yaml:
        content["application/yaml"] = {"schema": ref(schema)}
    return {"required": required, "content": content}


_STALE = "the attempt is stale or no longer this worker's, or the job has finished: stop it"


def _user_paths() -> Spec:
    query = [
        {"name": name, "in": "query", "schema": {"type": "string"}, "description": text}
        for name, text in (
            ("state", "comma-separated job states"),
            ("tenant", "only the caller's own tenant finds anything"),
            ("worker", "a worker id"),
            ("run", "a run id"),
        )
    ]
    log_query = [
        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0},
         "description": "the first chunk's seq"},
        {"name": "attempt", "in": "query", "schema": {"type": "integer", "minimum": 1},
         "description": "default: the current attempt"},
    ]  # fmt: skip
    text_log = {
        "description": "the log; text by default, JSON with Accept: application/json",
        "headers": {
            name: {"schema": {"type": "string"}, "description": text}
            for name, text in (
                ("Hodei-Attempt", "the attempt shown"),
                ("Hodei-Next-Offset", "the offset to read on from"),
                ("Hodei-Job-State", "the job's state"),
            )
        },
        "content": {
            "text/plain": {"schema": {"type": "string"}},
            "application/json": {"schema": ref("LogPage")},
        },
    }
    sse = {
        "description": "text/event-stream: `event: log` (`id: <attempt>:<seq>`, `data:` a "
        "LogEvent) for each chunk, `event: attempt` (`data:` an AttemptEvent) when a new "
        "attempt begins, then `event: end` (`data:` the Job); `: keep-alive` comments while "
        "idle. Resume with Last-Event-ID (`<attempt>:<seq>`).",
        "content": {"text/event-stream": {"schema": ref("ServerSentEvent")}},
    }
    retry_after = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    return {
        "/api/v1/pipelines": {
            "post": _op(
                "createPipeline", "Create a pipeline (JSON or YAML)", "pipelines",
                {"201": _json("created", "Pipeline")}, security=_TENANT,
                body=_body("PipelineInput", yaml=True), not_found=False,
            ),
            "get": _op(
                "listPipelines", "The tenant's pipelines", "pipelines",
                {"200": _json("a page", "PipelinePage")}, security=_TENANT,
                parameters=_PAGING, not_found=False,
            ),
        },
        "/api/v1/pipelines/{id}": {
            "get": _op("getPipeline", "A pipeline", "pipelines",
                       {"200": _json("the pipeline", "Pipeline")}, security=_TENANT,
                       parameters=[_ID]),
            "delete": _op("deletePipeline", "Delete a pipeline (its runs stay)", "pipelines",
                          {"204": {"description": "deleted"}}, security=_TENANT,
                          parameters=[_ID]),
        },
        "/api/v1/pipelines/{id}/runs": {
            "post": _op("startRun", "Run a pipeline", "runs",
                        {"202": _json("started", "Run")}, security=_TENANT, parameters=[_ID]),
            "get": _op("listRuns", "A pipeline's runs", "runs",
                       {"200": _json("a page", "RunPage")}, security=_TENANT,
                       parameters=[_ID, *_PAGING]),
        },
        "/api/v1/runs/{id}": {
            "get": _op("getRun", "A run", "runs", {"200": _json("the run", "Run")},
                       security=_TENANT, parameters=[_ID]),
        },
        "/api/v1/runs/{id}/cancel": {
            "post": _op("cancelRun", "Cancel a run and its live jobs", "runs",
                        {"202": _json("cancelling", "Run")}, security=_TENANT,
                        parameters=[_ID]),
        },
        "/api/v1/jobs": {
            "post": _op(
                "submitJob", "Submit a job", "jobs",
                {
                    "202": _json("queued", "Job"),
                    "429": {**_error("over the tenant's quota"), "headers": retry_after},
                },
                security=_TENANT, body=_body("JobSpecInput"), not_found=False,
            ),
            "get": _op("listJobs", "The tenant's jobs, oldest first", "jobs",
                       {"200": _json("a page", "JobPage")}, security=_TENANT,
                       parameters=[*query, *_PAGING], not_found=False),
        },
        "/api/v1/jobs/{id}": {
            "get": _op("getJob", "A job", "jobs", {"200": _json("the job", "Job")},
                       security=_TENANT, parameters=[_ID]),
        },
        "/api/v1/jobs/{id}/cancel": {
            "post": _op("cancelJob", "Cancel a job", "jobs",
                        {"202": _json("cancelled, or cancelling until its worker stops it", "Job")},
                        security=_TENANT, parameters=[_ID],
                        conflict="the job has already finished"),
        },
        "/api/v1/jobs/{id}/logs": {
            "get": _op(
                "getLogs", "A job attempt's log so far", "jobs", {"200": text_log},
                security=_TENANT,
                parameters=[_ID, *log_query, {"name": "limit", "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}],
            ),
            "post": _op(
                "appendLogs", "Agent: add log chunks of an attempt", "agents",
                {"200": _json("stored (resent seqs ignored)", "LogReceipt")},
                security=_WORKER, parameters=[_ID], body=_body("LogReport"), conflict=_STALE,
            ),
        },
        "/api/v1/jobs/{id}/logs/stream": {
            "get": _op("streamLogs", "Follow a job's log live (Server-Sent Events)", "jobs",
                       {"200": sse}, security=_TENANT,
                       parameters=[_ID, *log_query, {"name": "Last-Event-ID", "in": "header",
                                                     "schema": {"type": "string"}}]),
        },
    }  # fmt: skip


def _fleet_paths() -> Spec:
    state = {
        "name": "state", "in": "query", "schema": {"type": "string"},
        "description": "comma-separated worker states",
    }  # fmt: skip
    wait = {
        "name": "wait", "in": "query",
        "schema": {"type": "number", "minimum": 0, "default": 25},
        "description": "seconds to wait for instructions (capped at 60)",
    }  # fmt: skip
    return {
        "/api/v1/workers": {
            "get": _op("listWorkers", "The fleet", "workers",
                       {"200": _json("a page", "WorkerPage")}, security=_FLEET,
                       parameters=[state, *_PAGING], not_found=False),
            "post": _op(
                "registerWorker", "Agent: register (or update the worker with this name)",
                "agents",
                {"201": _json("a new worker", "RegistrationResult"),
                 "200": _json("the worker with this name, updated", "RegistrationResult")},
                security=[{"agentToken": []}], body=_body("Registration"), not_found=False,
                description="Registering an existing name again releases the jobs it had: "
                "an agent registers when it starts, so what it ran before is gone.",
            ),
        },
        "/api/v1/workers/{id}": {
            "get": _op("getWorker", "A worker", "workers", {"200": _json("the worker", "Worker")},
                       security=_FLEET, parameters=[_ID]),
        },
        "/api/v1/workers/{id}/drain": {
            "post": _op("drainWorker", "Give a worker no new jobs", "workers",
                        {"202": _json("draining", "Worker")}, security=_FLEET,
                        parameters=[_ID], conflict="the worker is offline or lost"),
        },
        "/api/v1/workers/{id}/heartbeat": {
            "post": _op("heartbeat", "Agent: alive, running these attempts", "agents",
                        {"200": _json("what to stop, whether to drain", "HeartbeatResult")},
                        security=_WORKER, parameters=[_ID],
                        body=_body("RunningAttempts", required=False)),
        },
        "/api/v1/workers/{id}/poll": {
            "post": _op(
                "poll", "Agent: long-poll for instructions", "agents",
                {"200": _json("jobs to start, attempts to stop, drain", "Instructions"),
                 "204": {"description": "nothing within the wait: poll again"}},
                security=_WORKER, parameters=[_ID, wait],
                body=_body("RunningAttempts", required=False),
                description="Answers as soon as a job is assigned to the worker (woken "
                "through the bus), or an attempt it runs must stop, or it must drain.",
            ),
        },
        "/api/v1/workers/{id}/leave": {
            "post": _op("leave", "Agent: go offline (after draining)", "agents",
                        {"200": _json("offline", "Worker")}, security=_WORKER,
                        parameters=[_ID], body=_body("Empty", required=False)),
        },
        "/api/v1/workers/{id}/reports": {
            "post": _op("reports", "Agent: several job reports at once", "agents",
                        {"200": _json("one result per report, in order", "ReportResults")},
                        security=_WORKER, parameters=[_ID], body=_body("ReportBatch"),
                        description="The reports of one attempt are applied in the order "
                        "given, those of different attempts side by side. A report refused "
                        "(409, 404) does not stop the others."),
        },
        "/api/v1/jobs/{id}/start": {
            "post": _op("startJob", "Agent: the attempt's process started", "agents",
                        {"200": _json("running", "Job")}, security=_WORKER, parameters=[_ID],
                        body=_body("StartReport"), conflict=_STALE),
        },
        "/api/v1/jobs/{id}/finish": {
            "post": _op("finishJob", "Agent: how the attempt ended, with its last chunks",
                        "agents", {"200": _json("the job after the attempt", "Job")},
                        security=_WORKER, parameters=[_ID], body=_body("FinishReport"),
                        conflict=_STALE),
        },
    }  # fmt: skip


def _service_paths() -> Spec:
    def plain(op_id: str, summary: str, answers: Spec) -> Spec:
        return {"get": {"operationId": op_id, "summary": summary, "tags": ["service"],
                        "security": [], "responses": answers}}  # fmt: skip

    return {
        "/healthz": plain("healthz", "The process is up", {"200": _json("up", "Status")}),
        "/readyz": plain(
            "readyz", "The store answers (the bus may be down: the engine works on without it)",
            {"200": _json("ready", "Readiness"), "503": _error("not ready")},
        ),
        "/metrics": plain(
            "metrics", "Prometheus metrics",
            {"200": {"description": "text exposition format",
                     "content": {"text/plain": {"schema": {"type": "string"}}}}},
        ),
        "/api/v1/openapi.json": plain(
            "openapi", "This document",
            {"200": {"description": "OpenAPI 3.1",
                     "content": {"application/json": {"schema": {"type": "object"}}}}},
        ),
    }  # fmt: skip


def openapi_document() -> Spec:
    """The OpenAPI document (a new dict on each call)."""
    bearer = {"type": "http", "scheme": "bearer"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Hodei Pipelines", "version": "1", "description": _DESCRIPTION},
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "pipelines"},
            {"name": "runs"},
            {"name": "jobs"},
            {"name": "workers"},
            {"name": "agents", "description": "the HWP agent protocol"},
            {"name": "service"},
        ],
        "paths": {**_user_paths(), **_fleet_paths(), **_service_paths()},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "tenantToken": {**bearer, "description": "a tenant's API token"},
                "agentToken": {**bearer, "description": "the agent registration token"},
                "workerToken": {**bearer, "description": "a worker token from registration"},
            },
        },
    }


if __name__ == "__main__":
    print(json.dumps(openapi_document(), indent=2))
