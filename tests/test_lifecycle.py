"""The state machines: every pair of states tried against the transition tables."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hodei_core import (
    JOB_TRANSITIONS,
    WORKER_TRANSITIONS,
    FailureReason,
    InvalidTransition,
    Job,
    JobAlreadyFinished,
    JobSpec,
    JobState,
    Outcome,
    StaleAttempt,
    Worker,
    WorkerState,
    transition_job,
    transition_worker,
)
from hodei_core import _lifecycle as lifecycle
from hodei_core._job_copy import evolve_job, maker

SPEC = JobSpec(command=["true"])


def job_in(state: JobState, **changes: object) -> Job:
    return attrs.evolve(Job(id="j", spec=SPEC, worker_id="w"), state=state, **changes)


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(JobState, JobState)))
def test_every_pair_of_job_states(src: JobState, dst: JobState) -> None:
    job = job_in(src)
    if dst in JOB_TRANSITIONS[src]:
        assert transition_job(job, dst).state is dst
    elif src.is_terminal:
        with pytest.raises(JobAlreadyFinished):
            transition_job(job, dst)
    else:
        with pytest.raises(InvalidTransition):
            transition_job(job, dst)


_MOVES = [
    (lifecycle._to_assigned, JobState.ASSIGNED, {"worker_id": "w2", "assigned_at": 5.0}),
    (lifecycle._to_running, JobState.RUNNING, {"started_at": 6.0}),
    (lifecycle._to_succeeded, JobState.SUCCEEDED, {"exit_code": 0, "finished_at": 7.0}),
]


@pytest.mark.parametrize(("move", "dst", "changes"), _MOVES)
@pytest.mark.parametrize("src", list(JobState))
def test_the_written_out_moves_follow_the_table(
    move: Callable[..., Job], dst: JobState, changes: dict[str, object], src: JobState
) -> None:
    job = job_in(src)
    try:
        expected: Job | type[Exception] = transition_job(job, dst, **changes)
    except (JobAlreadyFinished, InvalidTransition) as exc:
        expected = type(exc)
    if isinstance(expected, Job):
        assert move(job, *changes.values()) == expected
    else:
        with pytest.raises(expected):
            move(job, *changes.values())


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(WorkerState, WorkerState)))
def test_every_pair_of_worker_states(src: WorkerState, dst: WorkerState) -> None:
    worker = Worker(id="w", name="w", state=src)
    if dst in WORKER_TRANSITIONS[src]:
        assert transition_worker(worker, dst).state is dst
    else:
        with pytest.raises(InvalidTransition):
            transition_worker(worker, dst)


def test_terminal_states_lead_nowhere_and_others_can_end() -> None:
    for state in JobState:
        assert (not JOB_TRANSITIONS[state]) == state.is_terminal
    # every non-terminal state has a path to a terminal one
    for state in JobState:
        seen, todo = set(), [state]
        while todo:
            s = todo.pop()
            seen.add(s)
            todo.extend(JOB_TRANSITIONS[s] - seen)
        assert any(s.is_terminal for s in seen)


def test_fencing_refuses_old_attempts_and_other_workers() -> None:
    job = job_in(JobState.ASSIGNED, attempt=2)
    with pytest.raises(StaleAttempt):
        lifecycle.start(job, 1, "w", 0.0)
    with pytest.raises(StaleAttempt):
        lifecycle.start(job, 2, "other", 0.0)
    assert lifecycle.start(job, 2, "w", 5.0).started_at == 5.0


def test_finish_is_idempotent_and_retries_requeue() -> None:
    running = job_in(JobState.RUNNING, spec=JobSpec(command=["x"], retries=1))
    again = lifecycle.finish(running, 1, "w", Outcome(1), 1.0)
    assert (again.state, again.attempt, again.worker_id) == (JobState.QUEUED, 2, None)
    last = job_in(JobState.RUNNING, attempt=2, spec=JobSpec(command=["x"], retries=1))
    failed = lifecycle.finish(last, 2, "w", Outcome(1), 1.0)
    assert (failed.state, failed.failure) == (JobState.FAILED, FailureReason.SCRIPT_FAILURE)
    assert lifecycle.finish(failed, 2, "w", Outcome(1), 2.0) is failed


def test_outcomes_map_to_states() -> None:
    running = job_in(JobState.RUNNING)
    assert lifecycle.finish(running, 1, "w", Outcome(0), 1).state is JobState.SUCCEEDED
    timed = lifecycle.finish(running, 1, "w", Outcome(None, timed_out=True), 1)
    assert (timed.state, timed.failure) == (JobState.TIMED_OUT, FailureReason.TIMEOUT)
    broken = lifecycle.finish(running, 1, "w", Outcome(None, error="boom"), 1)
    assert (broken.state, broken.failure) == (JobState.FAILED, FailureReason.INTERNAL)
    cancelling = lifecycle.request_cancel(running, 1)
    assert cancelling.state is JobState.CANCELLING
    # whatever the process did, a job being cancelled ends cancelled
    assert lifecycle.finish(cancelling, 1, "w", Outcome(0), 2).state is JobState.CANCELLED


def test_losing_a_worker_requeues_then_fails() -> None:
    job = job_in(JobState.RUNNING, spec=JobSpec(command=["x"], retries=1))
    requeued = lifecycle.lose(job, 1.0)
    assert (requeued.state, requeued.attempt) == (JobState.QUEUED, 2)
    last = attrs.evolve(requeued, state=JobState.RUNNING, worker_id="w2")
    failed = lifecycle.lose(last, 2.0)
    assert (failed.state, failed.failure) == (JobState.FAILED, FailureReason.WORKER_LOST)
    assert lifecycle.lose(job_in(JobState.CANCELLING), 1.0).state is JobState.CANCELLED


def test_an_attempt_lost_before_it_started_costs_no_retry() -> None:
    job = job_in(JobState.ASSIGNED, spec=JobSpec(command=["x"]))  # no retries at all
    requeued = lifecycle.lose(job, 1.0)
    assert (requeued.state, requeued.attempt, requeued.unstarted_losses) == (JobState.QUEUED, 2, 1)
    assert (requeued.worker_id, requeued.assigned_at) == (None, None)
    # the next attempt starts, so it is the job's one run: losing it now fails the job
    running = lifecycle.start(lifecycle.assign(requeued, 2, "w2", 2.0), 2, "w2", 3.0)
    failed = lifecycle.lose(running, 4.0)
    assert (failed.state, failed.failure) == (JobState.FAILED, FailureReason.WORKER_LOST)
    # and a script failure after unstarted losses still gets the retries the spec asked for
    retried = attrs.evolve(running, spec=JobSpec(command=["x"], retries=1))
    again = lifecycle.finish(retried, 2, "w2", Outcome(1), 5.0)
    assert (again.state, again.attempt, again.unstarted_losses) == (JobState.QUEUED, 3, 1)
    last = lifecycle.start(lifecycle.assign(again, 3, "w3", 6.0), 3, "w3", 7.0)
    assert lifecycle.finish(last, 3, "w3", Outcome(1), 8.0).state is JobState.FAILED


def test_only_so_many_unstarted_losses_are_free() -> None:
    # a job handed to agent after agent that dies before it can report the start
    job = job_in(JobState.QUEUED, spec=JobSpec(command=["x"], retries=1))
    for n in range(1, lifecycle.FREE_UNSTARTED_LOSSES + 1):
        job = lifecycle.lose(lifecycle.assign(job, job.attempt, "w", 1.0), 2.0)
        assert (job.state, job.attempt, job.unstarted_losses) == (JobState.QUEUED, n + 1, n)
    # then a loss counts: first against the one retry, then it fails the job
    job = lifecycle.lose(lifecycle.assign(job, job.attempt, "w", 1.0), 2.0)
    assert (job.state, job.unstarted_losses) == (JobState.QUEUED, lifecycle.FREE_UNSTARTED_LOSSES)
    job = lifecycle.lose(lifecycle.assign(job, job.attempt, "w", 1.0), 2.0)
    assert (job.state, job.failure) == (JobState.FAILED, FailureReason.WORKER_LOST)


def test_cancel_of_each_live_state() -> None:
    for state in (JobState.QUEUED, JobState.ASSIGNED):
        assert lifecycle.request_cancel(job_in(state), 1.0).state is JobState.CANCELLED
    cancelling = job_in(JobState.CANCELLING)
    assert lifecycle.request_cancel(cancelling, 1.0) is cancelling
    with pytest.raises(JobAlreadyFinished):
        lifecycle.request_cancel(job_in(JobState.SUCCEEDED), 1.0)


@given(
    st.dictionaries(
        st.sampled_from([a.name for a in attrs.fields(Job)]),
        st.one_of(st.none(), st.integers(), st.text(max_size=5), st.sampled_from(JobState)),
        max_size=6,
    )
)
def test_evolve_job_is_attrs_evolve(changes: dict[str, object]) -> None:
    """The lifecycle's faster copy of a job gives exactly what ``attrs.evolve`` gives."""
    job = job_in(JobState.RUNNING, attempt=3, exit_code=1, run_id="r", step="s")
    assert evolve_job(job, dict(changes)) == attrs.evolve(job, **changes)  # type: ignore[arg-type]


def test_evolve_job_refuses_a_field_jobs_do_not_have() -> None:
    with pytest.raises(TypeError, match="no field 'colour'"):
        evolve_job(job_in(JobState.QUEUED), {"state": JobState.ASSIGNED, "colour": 1})


def test_maker_makes_what_the_constructor_makes() -> None:
    make = maker(("id", "tenant", "spec", "created_at"))
    assert make("j1", "t", SPEC, 5.0) == Job(id="j1", tenant="t", spec=SPEC, created_at=5.0)
    with pytest.raises(TypeError, match="no field 'colour'"):
        maker(("id", "colour"))
