"""Domain values to table rows and back: the only place that knows both.

Scalars a query needs have their own columns; a job's spec, a worker's labels, a pipeline's
steps and a run's pipeline and steps are JSON text written by a private cattrs converter (the
domain classes know nothing of serialization). Rows are read positionally, in the column order
of the ``*_COLUMNS`` tuples, which every ``SELECT`` of ``_statements`` uses.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from cattrs.preconf.json import make_converter

from hodei_core import (
    Capacity,
    FailureReason,
    Job,
    JobSpec,
    JobState,
    LogChunk,
    Pipeline,
    Run,
    RunState,
    Step,
    StepRun,
    Stream,
    Worker,
    WorkerState,
    WorkerView,
)

from ._schema import jobs, log_chunks, pipelines, runs, workers

__all__ = [
    "CHUNK_COLUMNS",
    "JOB_COLUMNS",
    "PIPELINE_COLUMNS",
    "RUN_COLUMNS",
    "WORKER_COLUMNS",
    "chunk_from_row",
    "chunk_row",
    "job_changes",
    "job_from_row",
    "job_row",
    "pipeline_from_row",
    "pipeline_row",
    "run_from_row",
    "run_row",
    "view_from_row",
    "worker_from_row",
    "worker_row",
]

Row = Sequence[Any]

# Defaults left out keep the JSON short, and so quick to write and parse.
_json = make_converter(omit_if_default=True)

# Enum lookups by value, without the cost of calling the enum class.
_JOB_STATES = {s.value: s for s in JobState}
_FAILURES = {f.value: f for f in FailureReason}
_WORKER_STATES = {s.value: s for s in WorkerState}
_RUN_STATES = {s.value: s for s in RunState}
_STREAMS = {s.value: s for s in Stream}


def _spec_json(spec: JobSpec) -> str:
    return _json.dumps(spec, JobSpec, separators=(",", ":"), ensure_ascii=False)


# Many jobs share a spec (a burst of one command, the steps of one pipeline): parse each text
# once. A JobSpec is a frozen value that nobody mutates, so one instance can serve many jobs.
@functools.lru_cache(maxsize=4096)
def _spec(text: str) -> JobSpec:
    return _json.loads(text, JobSpec)


# -- jobs ---------------------------------------------------------------------------------------

JOB_COLUMNS = (
    jobs.c.id,
    jobs.c.tenant,
    jobs.c.state,
    jobs.c.attempt,
    jobs.c.unstarted_losses,
    jobs.c.worker_id,
    jobs.c.exit_code,
    jobs.c.failure,
    jobs.c.created_at,
    jobs.c.assigned_at,
    jobs.c.started_at,
    jobs.c.finished_at,
    jobs.c.run_id,
    jobs.c.step,
    jobs.c.spec,
)


def job_from_row(row: Row) -> Job:
    """The job in a row of ``JOB_COLUMNS``."""
    (
        id_,
        tenant,
        state,
        attempt,
        unstarted_losses,
        worker_id,
        exit_code,
        failure,
        created_at,
        assigned_at,
        started_at,
        finished_at,
        run_id,
        step,
        spec,
    ) = row
    return Job(
        id=id_,
        tenant=tenant,
        spec=_spec(spec),
        state=_JOB_STATES[state],
        attempt=attempt,
        unstarted_losses=unstarted_losses,
        worker_id=worker_id,
        exit_code=exit_code,
        failure=None if failure is None else _FAILURES[failure],
        created_at=created_at,
        assigned_at=assigned_at,
        started_at=started_at,
        finished_at=finished_at,
        run_id=run_id,
        step=step,
    )


def _spec_columns(spec: JobSpec) -> dict[str, Any]:
    return {
        "spec": _spec_json(spec),
        "priority": spec.priority,
        "cpu": spec.resources.cpu,
        "memory_mb": spec.resources.memory_mb,
    }


def job_row(job: Job) -> dict[str, Any]:
    """Every column of ``job`` but ``seq``, for an insert."""
    return {
        "id": job.id,
        "tenant": job.tenant,
        "state": job.state.value,
        "attempt": job.attempt,
        "unstarted_losses": job.unstarted_losses,
        "worker_id": job.worker_id,
        "exit_code": job.exit_code,
        "failure": None if job.failure is None else job.failure.value,
        "created_at": job.created_at,
        "assigned_at": job.assigned_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "run_id": job.run_id,
        "step": job.step,
        **_spec_columns(job.spec),
    }


# The columns that a change of a job may touch cheaply, compared field by field; the spec is
# compared (and written) only when it is another object, which a state change never makes.
_SCALARS = (
    "tenant",
    "attempt",
    "unstarted_losses",
    "worker_id",
    "exit_code",
    "created_at",
    "assigned_at",
    "started_at",
    "finished_at",
    "run_id",
    "step",
)


def job_changes(before: Job, after: Job) -> dict[str, Any]:
    """The columns whose values differ between two versions of one job (for an update)."""
    changes: dict[str, Any] = {}
    if before.state is not after.state:
        changes["state"] = after.state.value
    if before.failure is not after.failure:
        changes["failure"] = None if after.failure is None else after.failure.value
    for name in _SCALARS:
        value = getattr(after, name)
        if getattr(before, name) != value:
            changes[name] = value
    if after.spec is not before.spec and after.spec != before.spec:
        changes.update(_spec_columns(after.spec))
    return changes


# -- workers ------------------------------------------------------------------------------------

WORKER_COLUMNS = (
    workers.c.id,
    workers.c.name,
    workers.c.labels,
    workers.c.slots,
    workers.c.cpu,
    workers.c.memory_mb,
    workers.c.state,
    workers.c.last_heartbeat,
    workers.c.registered_at,
    workers.c.version,
    workers.c.hostname,
)


@functools.lru_cache(maxsize=1024)
def _labels(text: str) -> frozenset[str]:
    return _json.loads(text, frozenset[str])


def worker_from_row(row: Row) -> Worker:
    """The worker in the first ``len(WORKER_COLUMNS)`` items of a row."""
    (
        id_,
        name,
        labels,
        slots,
        cpu,
        memory_mb,
        state,
        last_heartbeat,
        registered_at,
        version,
        hostname,
    ) = row[: len(WORKER_COLUMNS)]
    return Worker(
        id=id_,
        name=name,
        labels=_labels(labels),
        capacity=Capacity(slots, cpu, memory_mb),
        state=_WORKER_STATES[state],
        last_heartbeat=last_heartbeat,
        registered_at=registered_at,
        version=version,
        hostname=hostname,
    )


def view_from_row(worker: Worker, used: Row) -> WorkerView:
    """A view of ``worker`` with the usage in ``used`` (slots, CPU, memory), or none."""
    if not used:
        return WorkerView(worker)
    slots, cpu, memory_mb = used
    # int() and float(): PostgreSQL sums a BIGINT column into a NUMERIC (a Decimal here)
    return WorkerView(worker, int(slots), float(cpu), int(memory_mb))


def worker_row(worker: Worker) -> dict[str, Any]:
    """Every column of ``worker`` but ``seq``."""
    return {
        "id": worker.id,
        "name": worker.name,
        # sorted, so that equal label sets are equal texts
        "labels": _json.dumps(sorted(worker.labels), list[str], separators=(",", ":")),
        "slots": worker.capacity.slots,
        "cpu": worker.capacity.cpu,
        "memory_mb": worker.capacity.memory_mb,
        "state": worker.state.value,
        "last_heartbeat": worker.last_heartbeat,
        "registered_at": worker.registered_at,
        "version": worker.version,
        "hostname": worker.hostname,
    }


# -- pipelines and runs -------------------------------------------------------------------------

PIPELINE_COLUMNS = (
    pipelines.c.id,
    pipelines.c.tenant,
    pipelines.c.name,
    pipelines.c.created_at,
    pipelines.c.steps,
)


def pipeline_from_row(row: Row) -> Pipeline:
    """The pipeline in a row of ``PIPELINE_COLUMNS``."""
    id_, tenant, name, created_at, steps = row
    return Pipeline(
        id=id_,
        tenant=tenant,
        name=name,
        steps=_json.loads(steps, tuple[Step, ...]),
        created_at=created_at,
    )


def pipeline_row(pipeline: Pipeline) -> dict[str, Any]:
    """Every column of ``pipeline`` but ``seq``."""
    return {
        "id": pipeline.id,
        "tenant": pipeline.tenant,
        "name": pipeline.name,
        "created_at": pipeline.created_at,
        "steps": _json.dumps(pipeline.steps, tuple[Step, ...], ensure_ascii=False),
    }


RUN_COLUMNS = (
    runs.c.id,
    runs.c.state,
    runs.c.cancel_requested,
    runs.c.created_at,
    runs.c.finished_at,
    runs.c.pipeline,
    runs.c.steps,
)


def run_from_row(row: Row) -> Run:
    """The run in a row of ``RUN_COLUMNS``."""
    id_, state, cancel_requested, created_at, finished_at, pipeline, steps = row
    return Run(
        id=id_,
        pipeline=_json.loads(pipeline, Pipeline),
        state=_RUN_STATES[state],
        steps=_json.loads(steps, tuple[StepRun, ...]),
        cancel_requested=bool(cancel_requested),
        created_at=created_at,
        finished_at=finished_at,
    )


def run_row(run: Run, *, pipeline: bool = True) -> dict[str, Any]:
    """The columns of ``run`` but ``seq``; without ``pipeline``, leave out its copy of the
    pipeline and what derives from it (a run's pipeline never changes)."""
    row: dict[str, Any] = {
        "id": run.id,
        "state": run.state.value,
        "cancel_requested": run.cancel_requested,
        "created_at": run.created_at,
        "finished_at": run.finished_at,
        "steps": _json.dumps(run.steps, tuple[StepRun, ...], ensure_ascii=False),
    }
    if pipeline:
        row["pipeline_id"] = run.pipeline_id
        row["tenant"] = run.tenant
        row["pipeline"] = _json.dumps(run.pipeline, Pipeline, ensure_ascii=False)
    return row


# -- logs ---------------------------------------------------------------------------------------

CHUNK_COLUMNS = (log_chunks.c.seq, log_chunks.c.stream, log_chunks.c.data, log_chunks.c.ts)


def chunk_from_row(row: Row) -> LogChunk:
    """The chunk in a row of ``CHUNK_COLUMNS``."""
    seq, stream, data, ts = row
    return LogChunk(seq, _STREAMS[stream], data, ts)


def chunk_row(
    job_id: str, attempt: int, chunk: LogChunk, *, keep_nul: bool = True
) -> Mapping[str, Any]:
    """Every column of one chunk of ``job_id``'s ``attempt``.

    PostgreSQL's text cannot hold NUL characters, which a program's output may contain: with
    ``keep_nul=False`` each becomes U+FFFD (rather than the whole batch failing, and an agent
    resending it forever).
    """
    data = chunk.data if keep_nul else chunk.data.replace("\x00", "\ufffd")
    return {
        "job_id": job_id,
        "attempt": attempt,
        "seq": chunk.seq,
        "stream": chunk.stream.value,
        "data": data,
        "ts": chunk.ts,
    }
