"""Schemathesis against the app, from the served OpenAPI document: for every operation,
generated requests (valid ones, and invalid ones) never get a 5xx, and every response matches
the document (status, content type, headers, body schema).

Each example runs on a fresh engine seeded with one of everything (a finished job, a running
one, a worker, a pipeline and its run), and its path id is sometimes replaced by a real one,
so that the generated bodies and queries reach the handlers' happy paths too, not only the
"not found" answers.
"""

from __future__ import annotations

from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
import trio
import trio.testing
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hodei_backends import MemoryEventBus, MemoryStore
from hodei_core import Hodei, JobSpec, LogChunk, Outcome, Step, Stream, WorkerRegistration
from hodei_http import create_app
from hodei_http._openapi import openapi_document

from .conftest import ACME, AGENT, GLOBEX, make_settings

SCHEMA = schemathesis.openapi.from_dict(openapi_document())
OPERATIONS = {
    f"{op.method.upper()} {op.path}": op for op in (r.ok() for r in SCHEMA.get_all_operations())
}
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
]
EXAMPLES = {GenerationMode.POSITIVE: 30, GenerationMode.NEGATIVE: 10}


async def _seeded(hodei: Hodei) -> dict[str, Any]:
    worker, _ = await hodei.workers.register(WorkerRegistration(name="w1"))
    finished = await hodei.submit(JobSpec(script="true", retries=1), tenant="acme")
    await hodei.scheduler.schedule_once()
    await hodei.orchestrator.start(worker.id, finished.id, 1)
    chunks = [LogChunk(0, Stream.STDOUT, "out\n", 1.0), LogChunk(1, Stream.STDERR, "err\n", 2.0)]
    await hodei.orchestrator.finish(worker.id, finished.id, 1, Outcome(0), chunks)
    running = await hodei.submit(JobSpec(command=["sleep", "1"]), tenant="acme")
    await hodei.scheduler.schedule_once()
    await hodei.orchestrator.start(worker.id, running.id, 1)
    steps = [
        Step(name="a", spec=JobSpec(script="a")),
        Step(name="b", spec=JobSpec(script="b"), depends_on=["a"]),
    ]
    pipeline = await hodei.create_pipeline("p", steps, tenant="acme")
    run = await hodei.start_run(pipeline.id)
    return {
        "worker": worker.id,
        "finished": finished.id,
        "running": running.id,
        "pipeline": pipeline.id,
        "run": run.id,
    }


def _real_id(path: str, ids: dict[str, Any], pick: int) -> str | None:
    """A seeded id that fits the path (None: keep the generated one)."""
    if pick == 0 or "{id}" not in path:
        return None
    if path.endswith("/logs/stream"):
        return str(ids["finished"])  # a running job's stream would never end
    for prefix, kinds in (
        ("/api/v1/jobs/", ("finished", "running")),
        ("/api/v1/pipelines/", ("pipeline",)),
        ("/api/v1/runs/", ("run",)),
        ("/api/v1/workers/", ("worker",)),
    ):
        if path.startswith(prefix):
            return str(ids[kinds[pick % len(kinds)]])
    return None


def _token(operation: schemathesis.APIOperation, worker_token: str, pick: int) -> str:
    schemes = {name for requirement in operation.definition.raw["security"] for name in requirement}
    if not schemes:
        return ACME
    if "workerToken" in schemes:
        return worker_token
    if "agentToken" in schemes and "tenantToken" not in schemes:
        return AGENT
    return GLOBEX if pick == 3 else ACME  # another tenant now and then: its 404s too


def _is_poll(case: schemathesis.Case) -> bool:
    return case.operation.path.endswith("/poll")


async def _exchange(case: schemathesis.Case, pick: int) -> None:
    hodei = Hodei(store=MemoryStore(), bus=MemoryEventBus())
    ids = await _seeded(hodei)
    app = create_app(hodei, make_settings())
    worker_token = app.state.api.auth.worker_token(ids["worker"])
    real = _real_id(case.operation.path, ids, pick)
    if real is not None:
        case.path_parameters = {**(case.path_parameters or {}), "id": real}
    token = _token(case.operation, worker_token, pick)
    kwargs = case.as_transport_kwargs(
        base_url="http://hodei.test", headers={"Authorization": f"Bearer {token}"}
    )
    request: dict[str, Any] = {
        "method": kwargs["method"],
        "url": kwargs["url"],
        "headers": kwargs["headers"],
        "params": kwargs.get("params") or None,
    }
    if "json" in kwargs:
        request["json"] = kwargs["json"]
    elif "data" in kwargs:
        request["content"] = kwargs["data"]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport) as client:
        try:
            built = client.build_request(**request)
        except (UnicodeEncodeError, ValueError, TypeError, httpx.HTTPError):
            hypothesis.reject()  # not a request any client could send
        with trio.fail_after(600 if _is_poll(case) else 10):
            response = await client.send(built)
    case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)


def _cases() -> list[tuple[str, GenerationMode]]:
    cases = []
    for name, operation in sorted(OPERATIONS.items()):
        cases.append((name, GenerationMode.POSITIVE))
        raw = operation.definition.raw
        if raw.get("parameters") or raw.get("requestBody"):  # else there is nothing to break
            cases.append((name, GenerationMode.NEGATIVE))
    return cases


@pytest.mark.parametrize(("name", "mode"), _cases(), ids=lambda v: getattr(v, "value", v))
def test_operation(name: str, mode: GenerationMode) -> None:
    operation = OPERATIONS[name]

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode), pick=st.integers(0, 3))
    @hypothesis.settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case, pick: int) -> None:
        # a long-poll waits up to a minute: on a clock that jumps, it answers at once (only
        # there: the clock would also jump past work waiting in a thread, such as YAML parsing)
        clock = trio.testing.MockClock(autojump_threshold=0) if _is_poll(case) else None
        trio.run(_exchange, case, pick, clock=clock)

    check()
