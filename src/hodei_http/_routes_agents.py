"""The HWP agent protocol over HTTP: register, heartbeat, long-poll, leave, and the job reports
(start, logs, finish), each fenced by ``(job_id, attempt)`` and the calling worker, alone or
in batches.

The long-poll subscribes to the worker's bus topics *before* it reads the store, so that an
assignment made between the read and the wait still wakes it: it answers within milliseconds of
``JobAssigned``. It reads the store again only when woken: by the bus, or, should the bus drop
an event (DESIGN §3), by the process's sweep for assigned jobs (``WaitingPolls``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive

from hodei_core import Job, Worker, WorkerState
from hodei_core.errors import BackendError, HodeiError, JobNotFound
from hodei_core.events import Event, JobAssigned
from hodei_core.ports import Instructions

from ._api import ID, Api, Endpoint, json_request, own_worker, path_id
from ._auth import Agent, WorkerCaller
from ._body import check_query, query_float
from ._errors import api_error_from, error_json, json_response
from ._requests import (
    EmptyRequest,
    FinishRequest,
    LogsRequest,
    RegisterRequest,
    Report,
    ReportsRequest,
    RunningRequest,
    StartRequest,
    WireChunk,
)
from ._wire import heartbeat_json, instructions_json, job_json, worker_json

__all__ = ["agent_endpoints"]


async def register(api: Api, request: Request, caller: Agent) -> Response:
    """``POST /api/v1/workers``: create the worker (201) or update the one with this name (200);
    returns its token and the pace to keep."""
    check_query(request, ())
    body = await json_request(api, request, RegisterRequest)
    worker, created = await api.hodei.workers.register(body.registration(), body.pairs())
    answer = {
        "worker": worker_json(worker),
        "token": api.auth.worker_token(worker.id),
        "heartbeat_interval_s": api.heartbeat_pace(),
        "poll_wait_s": api.settings.poll_wait_s,
        "lost_after_s": api.settings.lost_after_s,
    }
    location = {"Location": f"/api/v1/workers/{worker.id}"}
    return json_response(answer, 201 if created else 200, location)


async def heartbeat(api: Api, request: Request, caller: WorkerCaller) -> Response:
    """``POST /api/v1/workers/{id}/heartbeat``: alive, running these → what to stop, drain?"""
    worker_id = own_worker(request, caller)
    check_query(request, ())
    body = await json_request(api, request, RunningRequest, optional=True)
    instructions = await api.hodei.workers.heartbeat(worker_id, body.pairs())
    pace = api.heartbeat_pace(worker_id, draining=instructions.drain)
    return json_response(heartbeat_json(instructions, pace))


async def _instructions(
    api: Api, worker_id: str, running: Sequence[tuple[str, int]], wait_s: float
) -> Instructions | None:
    workers = api.hodei.workers
    worker: Worker | None = None
    read = False  # the worker's jobs were read, and since then came only ``assigned``
    assigned: list[tuple[str, int]] = []

    def heard(event: Event) -> None:
        nonlocal worker
        if type(event) is JobAssigned:
            assigned.append((event.job_id, event.attempt))
        else:
            worker = None

    async with api.hodei.bus.subscribe(f"workers.{worker_id}.>") as inbox:
        deadline = trio.current_time() + wait_s
        while True:
            # What arrived before this read only says "look again", which this read does.
            # Only an assignment leaves the worker's own record as it was (the usual wake-up,
            # one store read less on the way to the job's start); anything else (a drain, a
            # loss) has it read again.
            with contextlib.suppress(trio.WouldBlock):
                while True:
                    heard(inbox.receive_nowait())
            if read and worker is not None and assigned:
                # Only assignments since the last read, each left at hand by this process's
                # scheduler: the jobs as a store read would give them, without the read (nothing
                # else about the worker changed, or an event would have said so). A cancel whose
                # event the bus lost or delayed is not in this answer: the agent's next poll,
                # at once, starts with a store read, which has it.
                handed = workers.take_handed(assigned)
                if handed is not None:
                    held = set(running)
                    jobs = tuple(job for job in handed if (job.id, job.attempt) not in held)
                    if jobs:
                        return Instructions(jobs=jobs, drain=worker.state is WorkerState.DRAINING)
            assigned.clear()
            if worker is None:
                worker = await workers.get(worker_id)
            if worker.state is WorkerState.LOST:
                if read:
                    # lost while this poll waited: the poll itself is no news of the agent (a
                    # vanished host leaves it waiting), so it must not bring the worker back;
                    # an agent that is alive polls again at once, and that poll does
                    return None
                # a poll is a sign of life too (and the heartbeats of a worker whose poll was
                # speaking for it are rare): back online, told to stop what went to others
                instructions = await workers.heartbeat(worker_id, running)
                if instructions.cancel or instructions.drain:
                    return instructions
                worker = await workers.get(worker_id)
            instructions = await workers.instructions(worker, running)
            read = True
            if instructions.jobs or instructions.cancel or instructions.drain:
                return instructions
            # until the bus or the sweep wakes this poll (the sweep cancels `wait`, and looks
            # for assignments only)
            with trio.move_on_at(deadline) as wait, api.polls.waiting(worker_id, wait, wait_s):
                heard(await inbox.receive())
            if trio.current_time() >= deadline:
                # no read for what came at the last moment: the agent's next poll does it first
                return None


async def _until_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()  # nobody is waiting for the answer any more


async def poll(api: Api, request: Request, caller: WorkerCaller) -> Response:
    """``POST /api/v1/workers/{id}/poll?wait=25``: 200 with instructions as soon as there are
    any, else 204 after ``wait`` seconds (at most ``Api.max_wait_s``)."""
    worker_id = own_worker(request, caller)
    check_query(request, ("wait",))
    wait_s = min(query_float(request, "wait", api.settings.poll_wait_s, 0, 1e9), api.max_wait_s)
    body = await json_request(api, request, RunningRequest, optional=True)
    found: Instructions | None = None
    error: HodeiError | None = None
    api.metrics.polls_waiting += 1
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_until_disconnect, request.receive, nursery.cancel_scope)
            try:
                found = await _instructions(api, worker_id, body.pairs(), wait_s)
            except HodeiError as exc:  # raised outside the nursery: no exception group
                error = exc
            nursery.cancel_scope.cancel()
    finally:
        api.metrics.polls_waiting -= 1
    if error is not None:
        raise error
    if found is None:
        return Response(status_code=204)
    return json_response(instructions_json(found))


async def leave(api: Api, request: Request, caller: WorkerCaller) -> Response:
    """``POST /api/v1/workers/{id}/leave``: the worker goes offline on purpose; jobs it still
    had go back to the queue."""
    worker_id = own_worker(request, caller)
    check_query(request, ())
    await json_request(api, request, EmptyRequest, optional=True)
    return json_response(worker_json(await api.hodei.workers.leave(worker_id)))


def _observe_log_lag(api: Api, chunks: Sequence[WireChunk]) -> None:
    now = api.hodei.clock()
    for chunk in chunks:
        if chunk.ts > 0:
            api.metrics.log_lag.observe(now - chunk.ts)


async def _start(api: Api, worker_id: str, job_id: str, attempt: int) -> Job:
    before = api.hodei.clock()
    job = await api.hodei.orchestrator.start(worker_id, job_id, attempt)
    # a resend of the start leaves the job as it was: count each start once
    if job.started_at is not None and job.started_at >= before:
        if job.assigned_at is not None:
            api.metrics.dispatch_latency.observe(job.assigned_at - job.created_at)
        api.metrics.start_latency.observe(job.started_at - job.created_at)
    return job


async def start(api: Api, request: Request, caller: WorkerCaller) -> Response:
    """``POST /api/v1/jobs/{id}/start``: ``{attempt}`` → the job, running; 409 when stale."""
    check_query(request, ())
    job_id = path_id(request, JobNotFound)
    body = await json_request(api, request, StartRequest)
    return json_response(job_json(await _start(api, caller.worker_id, job_id, body.attempt)))


async def append_logs(api: Api, request: Request, caller: WorkerCaller) -> Response:
    """``POST /api/v1/jobs/{id}/logs``: ``{attempt, chunks}``; a resent ``seq`` is ignored."""
    check_query(request, ())
    job_id = path_id(request, JobNotFound)
    body = await json_request(api, request, LogsRequest, nul_ok=True)
    chunks = [c.chunk() for c in body.chunks]
    await api.hodei.orchestrator.append_logs(caller.worker_id, job_id, body.attempt, chunks)
    _observe_log_lag(api, body.chunks)
    return json_response({"job_id": job_id, "attempt": body.attempt, "received": len(chunks)})


async def finish(api: Api, request: Request, caller: WorkerCaller) -> Response:
    """``POST /api/v1/jobs/{id}/finish``: how the attempt ended, with its last log chunks."""
    check_query(request, ())
    job_id = path_id(request, JobNotFound)
    body = await json_request(api, request, FinishRequest, nul_ok=True)
    chunks = [c.chunk() for c in body.log_chunks]
    job = await api.hodei.orchestrator.finish(
        caller.worker_id, job_id, body.attempt, body.outcome(), chunks
    )
    _observe_log_lag(api, body.log_chunks)
    return json_response(job_json(job))


async def _report(api: Api, worker_id: str, report: Report) -> None:
    orchestrator = api.hodei.orchestrator
    if not ID.match(report.job_id):
        raise JobNotFound(report.job_id)
    if report.type == "start":
        await _start(api, worker_id, report.job_id, report.attempt)
        return
    chunks = [c.chunk() for c in report.chunks]
    if report.type == "logs":
        await orchestrator.append_logs(worker_id, report.job_id, report.attempt, chunks)
    else:
        outcome = report.outcome()
        await orchestrator.finish(worker_id, report.job_id, report.attempt, outcome, chunks)
    _observe_log_lag(api, report.chunks)


async def reports(api: Api, request: Request, caller: WorkerCaller) -> Response:
    """``POST /api/v1/workers/{id}/reports``: several reports at once → one result each.

    The reports of one attempt are applied in the order given; those of different attempts
    side by side, so that a store may write them together. A refused report (409, 404) does
    not stop the others: each result is the status and error its own endpoint would answer.
    """
    worker_id = own_worker(request, caller)
    check_query(request, ())
    body = await json_request(api, request, ReportsRequest, nul_ok=True)
    body.check()
    results: list[dict[str, Any]] = [{"status": 200}] * len(body.reports)
    lanes: dict[tuple[str, int], list[int]] = {}
    for i, report in enumerate(body.reports):
        lanes.setdefault((report.job_id, report.attempt), []).append(i)

    unavailable: list[HodeiError] = []

    async def lane(indexes: list[int]) -> None:
        for i in indexes:
            try:
                await _report(api, worker_id, body.reports[i])
            except BackendError as exc:
                unavailable.append(exc)  # the store is down: all of it again, later
                return
            except HodeiError as exc:
                error = api_error_from(exc)
                results[i] = {"status": error.status, "error": error_json(error)}

    async with trio.open_nursery() as nursery:
        for indexes in lanes.values():
            nursery.start_soon(lane, indexes)
    if unavailable:
        raise unavailable[0]  # what was applied is applied: every report is idempotent
    return json_response({"results": results})


def agent_endpoints() -> list[Endpoint]:
    """The endpoints of this module."""
    w = (WorkerCaller,)
    return [
        Endpoint("/api/v1/workers", "POST", register, (Agent,)),
        Endpoint("/api/v1/workers/{id}/heartbeat", "POST", heartbeat, w),
        Endpoint("/api/v1/workers/{id}/poll", "POST", poll, w),
        Endpoint("/api/v1/workers/{id}/leave", "POST", leave, w),
        Endpoint("/api/v1/workers/{id}/reports", "POST", reports, w),
        Endpoint("/api/v1/jobs/{id}/start", "POST", start, w),
        Endpoint("/api/v1/jobs/{id}/logs", "POST", append_logs, w),
        Endpoint("/api/v1/jobs/{id}/finish", "POST", finish, w),
    ]
