"""The state machines: each written once as a table, and the pure functions that move along it.

Every change of a job's or worker's state goes through ``transition_job`` /
``transition_worker``; the helpers below (``assign``, ``start``, ``finish``…) add fencing and the
fields that go with each move. They are pure, so a store can run them inside its transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._job_copy import evolve_job, mover
from ._models import (
    FailureReason,
    Job,
    JobState,
    Outcome,
    Worker,
    WorkerRegistration,
    WorkerState,
)
from .errors import InvalidTransition, JobAlreadyFinished, StaleAttempt

__all__ = [
    "FREE_UNSTARTED_LOSSES",
    "JOB_TRANSITIONS",
    "WORKER_TRANSITIONS",
    "assign",
    "check_fence",
    "finish",
    "lose",
    "registered",
    "request_cancel",
    "start",
    "transition_job",
    "transition_worker",
    "unschedulable",
]

#: How many attempts of a job may be lost before they start without counting against its
#: retries. Past that, a loss counts like any other: a job that kills every agent it is handed
#: to (before the agent can even report its start) must not go round the fleet for ever.
FREE_UNSTARTED_LOSSES = 5

_J = JobState
JOB_TRANSITIONS: Mapping[JobState, frozenset[JobState]] = {
    # a queued job is placed, cancelled, or found impossible to place
    _J.QUEUED: frozenset({_J.ASSIGNED, _J.CANCELLED, _J.FAILED}),
    # an assigned job starts, or goes back (worker lost, retries left), or is cancelled before it
    # started, or fails (worker lost with no retries left, or the executor could not run it)
    _J.ASSIGNED: frozenset({_J.RUNNING, _J.QUEUED, _J.CANCELLED, _J.FAILED}),
    # a running job ends, or is retried (QUEUED), or asked to stop (CANCELLING)
    _J.RUNNING: frozenset({_J.SUCCEEDED, _J.FAILED, _J.TIMED_OUT, _J.QUEUED, _J.CANCELLING}),
    # whatever the process did after the request, a job being cancelled ends cancelled; a lost
    # worker confirms the cancellation by vanishing
    _J.CANCELLING: frozenset({_J.CANCELLED}),
    _J.SUCCEEDED: frozenset(),
    _J.FAILED: frozenset(),
    _J.TIMED_OUT: frozenset(),
    _J.CANCELLED: frozenset(),
}

_W = WorkerState
WORKER_TRANSITIONS: Mapping[WorkerState, frozenset[WorkerState]] = {
    _W.ONLINE: frozenset({_W.DRAINING, _W.OFFLINE, _W.LOST}),
    _W.DRAINING: frozenset({_W.ONLINE, _W.OFFLINE, _W.LOST}),
    # offline and lost workers come back by registering (or heartbeating) again
    _W.OFFLINE: frozenset({_W.ONLINE}),
    _W.LOST: frozenset({_W.ONLINE, _W.OFFLINE}),
}


def transition_job(job: Job, to: JobState, **changes: Any) -> Job:
    """``job`` in state ``to`` with ``changes``, if the table allows it.

    Raises:
        JobAlreadyFinished: the job is in a terminal state.
        InvalidTransition: the table has no arrow from the job's state to ``to``.
    """
    if to not in JOB_TRANSITIONS[job.state]:
        _refuse(job, to)
    changes["state"] = to
    return evolve_job(job, changes)


def _refuse(job: Job, to: JobState) -> None:
    if job.state.is_terminal:
        raise JobAlreadyFinished(job.id, job.state)
    raise InvalidTransition("job", job.id, job.state, to)


def _move(to: JobState, *changed: str) -> Callable[..., Job]:
    # ``transition_job`` written out for the moves every job makes (see ``_job_copy``)
    sources = [state for state, targets in JOB_TRANSITIONS.items() if to in targets]
    return mover(to, changed, sources, _refuse)


# Enum members read once here: in CPython 3.11 ``JobState.X`` goes through the enum
# metaclass's ``__getattr__`` hook (~0.15 us, ten times a global), and these run for every job.
_ASSIGNED, _RUNNING, _CANCELLING = JobState.ASSIGNED, JobState.RUNNING, JobState.CANCELLING
_RUNNING_OR_CANCELLING = (_RUNNING, _CANCELLING)

_to_assigned = _move(JobState.ASSIGNED, "worker_id", "assigned_at")
_to_running = _move(JobState.RUNNING, "started_at")
_to_succeeded = _move(JobState.SUCCEEDED, "exit_code", "finished_at")


def transition_worker(worker: Worker, to: WorkerState, **changes: Any) -> Worker:
    """``worker`` in state ``to`` with ``changes``, if the table allows it.

    Raises:
        InvalidTransition: the table has no arrow from the worker's state to ``to``.
    """
    if to not in WORKER_TRANSITIONS[worker.state]:
        raise InvalidTransition("worker", worker.id, worker.state, to)
    return attrs.evolve(worker, state=to, **changes)


def registered(
    worker: Worker | None, registration: WorkerRegistration, new_id: str, now: float
) -> Worker:
    """The record of a worker that (re)registers: new with ``new_id``, or ``worker`` updated
    with what the agent now says about itself, and online either way."""
    if worker is None:
        return Worker(
            id=new_id,
            name=registration.name,
            labels=registration.labels,
            capacity=registration.capacity,
            version=registration.version,
            hostname=registration.hostname,
            last_heartbeat=now,
            registered_at=now,
        )
    if worker.state is not WorkerState.ONLINE:
        worker = transition_worker(worker, WorkerState.ONLINE)
    return attrs.evolve(
        worker,
        labels=registration.labels,
        capacity=registration.capacity,
        version=registration.version,
        hostname=registration.hostname,
        last_heartbeat=now,
    )


def check_fence(job: Job, attempt: int, worker_id: str | None = None) -> None:
    """Refuse a report about an attempt, or from a worker, that no longer owns ``job``.

    Raises:
        StaleAttempt: ``attempt`` is not the job's current attempt, or ``worker_id`` is given and
            is not the worker the job is assigned to.
    """
    if attempt != job.attempt or (worker_id is not None and worker_id != job.worker_id):
        raise StaleAttempt(job.id, attempt, job.attempt)


def assign(job: Job, attempt: int, worker_id: str, now: float) -> Job:
    """Place a queued job on a worker."""
    check_fence(job, attempt)
    return _to_assigned(job, worker_id, now)


def start(job: Job, attempt: int, worker_id: str | None, now: float) -> Job:
    """The worker has started the job's process. Starting twice is harmless (a resend)."""
    check_fence(job, attempt, worker_id)
    if job.state in _RUNNING_OR_CANCELLING:
        return job
    return _to_running(job, now)


def finish(job: Job, attempt: int, worker_id: str | None, outcome: Outcome, now: float) -> Job:
    """Record how an attempt ended: a terminal state, or queued again if retries remain.

    Finishing twice with the same attempt returns the job unchanged, so a worker may resend its
    result after a network error.
    """
    if job.state.is_terminal and attempt == job.attempt:
        return job
    check_fence(job, attempt, worker_id)
    if job.state is _ASSIGNED:
        # The worker never reported a start (it could not run the job, or the report was lost).
        job = transition_job(job, JobState.RUNNING, started_at=job.started_at or now)
    if job.state is _CANCELLING or outcome.cancelled:
        if job.state is _RUNNING:
            job = transition_job(job, JobState.CANCELLING)
        return transition_job(
            job,
            JobState.CANCELLED,
            exit_code=outcome.exit_code,
            failure=FailureReason.CANCELLED,
            finished_at=now,
        )
    if outcome.exit_code == 0 and not outcome.timed_out and outcome.error is None:
        return _to_succeeded(job, 0, now)
    if outcome.timed_out:
        state, reason = JobState.TIMED_OUT, FailureReason.TIMEOUT
    elif outcome.error is not None:
        state, reason = JobState.FAILED, FailureReason.INTERNAL
    else:
        state, reason = JobState.FAILED, FailureReason.SCRIPT_FAILURE
    if _may_retry(job):
        return _requeue(job)
    return transition_job(job, state, exit_code=outcome.exit_code, failure=reason, finished_at=now)


def lose(job: Job, now: float) -> Job:
    """The job's worker is gone: queue it again while retries remain, else fail it.

    An attempt lost before it started (still ``assigned``) costs no retry: nothing of the job
    ran, and a worker that died just after it was chosen (a dead agent looks alive until
    ``lost_after_s``) must not fail a job that has no retries. That holds for the first
    ``FREE_UNSTARTED_LOSSES`` such losses of a job; later ones count as usual.
    """
    if job.state is JobState.CANCELLING:
        return transition_job(
            job, JobState.CANCELLED, failure=FailureReason.CANCELLED, finished_at=now
        )
    if job.state is JobState.ASSIGNED and job.unstarted_losses < FREE_UNSTARTED_LOSSES:
        return _requeue(job, unstarted_losses=job.unstarted_losses + 1)
    if _may_retry(job):
        return _requeue(job)
    return transition_job(job, JobState.FAILED, failure=FailureReason.WORKER_LOST, finished_at=now)


def request_cancel(job: Job, now: float) -> Job:
    """Cancel ``job``: at once if no process runs it yet, else ask its worker (``cancelling``).

    Cancelling a job that is already being cancelled changes nothing.

    Raises:
        JobAlreadyFinished: the job is in a terminal state.
    """
    if job.state is JobState.CANCELLING:
        return job
    if job.state is JobState.RUNNING:
        return transition_job(job, JobState.CANCELLING)
    return transition_job(job, JobState.CANCELLED, failure=FailureReason.CANCELLED, finished_at=now)


def unschedulable(job: Job, now: float) -> Job:
    """No registered worker could ever run ``job``."""
    return transition_job(
        job, JobState.FAILED, failure=FailureReason.UNSCHEDULABLE, finished_at=now
    )


def _may_retry(job: Job) -> bool:
    # the attempts that started, this one included, against the first run plus the retries
    return job.attempt - job.unstarted_losses <= job.spec.retries


def _requeue(job: Job, **changes: Any) -> Job:
    return transition_job(
        job,
        JobState.QUEUED,
        attempt=job.attempt + 1,
        worker_id=None,
        exit_code=None,
        assigned_at=None,
        started_at=None,
        **changes,
    )
