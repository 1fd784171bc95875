"""The pure rules of a pipeline run: which steps start, which are skipped, how the run ends."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from ._models import Job, JobState, Pipeline, Run, RunState, StepRun, StepState

__all__ = ["advance", "begin", "request_cancel"]

_STEP_RESULT = {
    JobState.SUCCEEDED: StepState.SUCCEEDED,
    JobState.FAILED: StepState.FAILED,
    JobState.TIMED_OUT: StepState.FAILED,
    JobState.CANCELLED: StepState.CANCELLED,
}


def begin(
    pipeline: Pipeline, run_id: str, now: float, new_job_id: Callable[[], str]
) -> tuple[Run, list[Job]]:
    """A new run of ``pipeline`` and the jobs of its steps without dependencies.

    ``new_job_id`` makes the ids of the jobs.
    """
    run = Run(
        id=run_id,
        pipeline=pipeline,
        steps=[StepRun(step.name) for step in pipeline.steps],
        created_at=now,
    )
    return _release(run, now, new_job_id)


def advance(run: Run, job: Job, now: float, new_job_id: Callable[[], str]) -> tuple[Run, list[Job]]:
    """``run`` after its step's ``job`` ended, and the jobs of the steps that may start now."""
    if run.state.is_terminal or job.step is None:
        return run, []
    current = run.step(job.step)
    if current.job_id != job.id or current.state is not StepState.RUNNING:
        return run, []  # a resend, or a job the run no longer waits for
    result = _STEP_RESULT[job.state]
    steps = {s.name: s for s in run.steps}
    steps[job.step] = attrs.evolve(current, state=result)
    if result is not StepState.SUCCEEDED:
        _skip_dependents(run.pipeline, steps, job.step)
    return _release(attrs.evolve(run, steps=list(steps.values())), now, new_job_id)


def request_cancel(run: Run, now: float) -> tuple[Run, list[str]]:
    """``run`` with its waiting steps cancelled, and the ids of the jobs still to cancel."""
    if run.state.is_terminal:
        return run, []
    steps = [
        attrs.evolve(s, state=StepState.CANCELLED) if s.state is StepState.WAITING else s
        for s in run.steps
    ]
    live = [s.job_id for s in steps if s.state is StepState.RUNNING and s.job_id is not None]
    run = _settle(attrs.evolve(run, steps=steps, cancel_requested=True), now)
    return run, live


def _skip_dependents(pipeline: Pipeline, steps: dict[str, StepRun], failed: str) -> None:
    dependents: dict[str, list[str]] = {}
    for step in pipeline.steps:
        for dep in step.depends_on:
            dependents.setdefault(dep, []).append(step.name)
    todo = list(dependents.get(failed, ()))
    while todo:
        name = todo.pop()
        if steps[name].state is StepState.WAITING:
            steps[name] = attrs.evolve(steps[name], state=StepState.SKIPPED)
            todo.extend(dependents.get(name, ()))


def _release(run: Run, now: float, new_job_id: Callable[[], str]) -> tuple[Run, list[Job]]:
    if run.cancel_requested:
        return _settle(run, now), []
    states = {s.name: s.state for s in run.steps}
    jobs = []
    steps = []
    for step_run, step in zip(run.steps, run.pipeline.steps, strict=True):
        if step_run.state is StepState.WAITING and all(
            states[d] is StepState.SUCCEEDED for d in step.depends_on
        ):
            job = Job(
                id=new_job_id(),
                tenant=run.tenant,
                spec=step.spec,
                created_at=now,
                run_id=run.id,
                step=step.name,
            )
            jobs.append(job)
            steps.append(attrs.evolve(step_run, state=StepState.RUNNING, job_id=job.id))
        else:
            steps.append(step_run)
    return _settle(attrs.evolve(run, steps=steps), now), jobs


def _settle(run: Run, now: float) -> Run:
    if not all(s.state.is_terminal for s in run.steps):
        return run
    if run.cancel_requested:
        state = RunState.CANCELLED
    elif all(s.state is StepState.SUCCEEDED for s in run.steps):
        state = RunState.SUCCEEDED
    else:
        state = RunState.FAILED
    return attrs.evolve(run, state=state, finished_at=now)
