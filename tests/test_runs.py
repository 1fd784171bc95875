"""Pipeline runs on the embedded engine: ordering, skipping, cancelling."""

from __future__ import annotations

import pytest
import trio

from hodei_backends import open_embedded
from hodei_core import (
    Hodei,
    JobSpec,
    JobState,
    PipelineInvalid,
    PipelineNotFound,
    RunState,
    Step,
    StepState,
)
from hodei_core.testing import CallableExecutor, ManualExecutor


def step(name: str, *deps: str, script: str = "true") -> Step:
    return Step(name=name, spec=JobSpec(script=script, name=name), depends_on=deps)


DIAMOND = [step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")]


async def test_steps_start_when_their_dependencies_succeed() -> None:
    order: list[str] = []

    def record(job):  # type: ignore[no-untyped-def]
        order.append(job.step)
        return 0

    async with open_embedded(workers=2, executor=CallableExecutor(record)) as hodei:
        pipeline = await hodei.create_pipeline("diamond", DIAMOND)
        run = await hodei.wait_run((await hodei.start_run(pipeline.id)).id)
    assert run.state is RunState.SUCCEEDED
    assert [s.state for s in run.steps] == [StepState.SUCCEEDED] * 4
    assert order[0] == "a" and order[-1] == "d" and set(order[1:3]) == {"b", "c"}


async def test_a_failed_step_skips_its_dependents_only() -> None:
    pipeline_steps = [
        step("a"),
        step("bad", "a"),
        step("fine", "a"),
        step("after-bad", "bad"),
        step("last", "after-bad", "fine"),
    ]

    def run_step(job):  # type: ignore[no-untyped-def]
        return 1 if job.step == "bad" else 0

    async with open_embedded(workers=1, executor=CallableExecutor(run_step)) as hodei:
        pipeline = await hodei.create_pipeline("p", pipeline_steps)
        run = await hodei.wait_run((await hodei.start_run(pipeline.id)).id)
    states = {s.name: s.state for s in run.steps}
    assert run.state is RunState.FAILED
    assert states == {
        "a": StepState.SUCCEEDED,
        "bad": StepState.FAILED,
        "fine": StepState.SUCCEEDED,
        "after-bad": StepState.SKIPPED,
        "last": StepState.SKIPPED,
    }
    assert run.step("after-bad").job_id is None  # a skipped step never had a job


async def test_cancelling_a_run_cancels_its_live_jobs(
    engine: Hodei, manual: ManualExecutor
) -> None:
    pipeline = await engine.create_pipeline("p", [step("a"), step("b"), step("c", "a", "b")])
    run = await engine.start_run(pipeline.id)
    a, b = (run.step("a").job_id, run.step("b").job_id)
    assert a is not None and b is not None
    await manual.started(a)
    manual.finish(a)
    await engine.wait(a)
    await manual.started(b)
    run = await engine.cancel_run(run.id)
    run = await engine.wait_run(run.id, timeout_s=5)
    assert run.state is RunState.CANCELLED
    assert [s.state for s in run.steps] == [
        StepState.SUCCEEDED,
        StepState.CANCELLED,
        StepState.CANCELLED,
    ]
    assert (await engine.get(b)).state is JobState.CANCELLED
    assert b not in manual.running


async def test_invalid_pipeline_lists_every_problem(engine: Hodei) -> None:
    with pytest.raises(PipelineInvalid) as info:
        await engine.create_pipeline("p", [step("a", "b"), step("b", "a"), step("a")])
    messages = [str(p) for p in info.value.problems]
    assert any("duplicate step name 'a'" in m for m in messages)
    assert any("cycle" in m and "a -> b -> a" in m for m in messages)
    assert await engine.list_pipelines() == []


async def test_runs_keep_their_pipeline_after_it_is_deleted(
    engine: Hodei, manual: ManualExecutor
) -> None:
    pipeline = await engine.create_pipeline("p", [step("a"), step("b", "a")])
    run = await engine.start_run(pipeline.id)
    await engine.delete_pipeline(pipeline.id)
    with pytest.raises(PipelineNotFound):
        await engine.get_pipeline(pipeline.id)
    first = run.step("a").job_id
    assert first is not None
    async with engine.bus.subscribe("jobs.default.*.submitted") as submitted:
        manual.finish(first)
        with trio.fail_after(5):
            await submitted.receive()
    second = (await engine.get_run(run.id)).step("b").job_id
    assert second is not None
    manual.finish(second)
    assert (await engine.wait_run(run.id)).state is RunState.SUCCEEDED
