"""The store contract for pipelines, their runs, and the logs of jobs."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ..._models import (
    Job,
    JobSpec,
    LogChunk,
    Pipeline,
    Resources,
    Run,
    RunState,
    Step,
    StepRun,
    StepState,
    Stream,
)
from ...errors import (
    PipelineNotFound,
    RunNotFound,
)
from ...ports import JobQuery, Store
from ._support import (
    _T0,
    _Boom,
    _ids,
    _job,
    _pipeline,
    _raises,
    _run,
    _step_job,
)


class PipelinesRunsLogsContract:
    """The store contract for pipelines, their runs, and the logs of jobs.

    Mixed into ``StoreContract``.
    """

    # -- pipelines --

    async def test_add_get_and_list_pipelines(self, store: Store) -> None:
        """Pipelines round-trip and are listed oldest first, by tenant if asked."""
        p1 = Pipeline(
            id="p1",
            tenant="ta",
            name="hello",
            steps=(
                Step(
                    name="build",
                    spec=JobSpec(
                        script="echo building",
                        env={"A": "1"},
                        secrets={"KEY": "v"},
                        labels=frozenset({"linux"}),
                        resources=Resources(0.5, 128),
                        timeout_s=60.0,
                        retries=1,
                        priority=2,
                    ),
                ),
                Step(name="test", spec=JobSpec(command=("pytest", "-q")), depends_on=("build",)),
                Step(name="ship", spec=JobSpec(script="true"), depends_on=("build", "test")),
            ),
            created_at=_T0 + 1,
        )
        p2 = _pipeline("p2", tenant="tb", created_at=_T0 + 2)
        p3 = _pipeline("p3", tenant="ta", created_at=_T0 + 3)
        for pipeline in [p1, p2, p3]:
            await store.add_pipeline(pipeline)
        assert await store.get_pipeline("p1") == p1
        assert await store.list_pipelines() == [p1, p2, p3]
        assert await store.list_pipelines("ta") == [p1, p3]
        assert await store.list_pipelines(tenant="tb") == [p2]
        assert await store.list_pipelines("nobody") == []

    async def test_get_unknown_pipeline_raises(self, store: Store) -> None:
        """``get_pipeline`` of an unknown id raises ``PipelineNotFound``."""
        with _raises(PipelineNotFound) as caught:
            await store.get_pipeline("nope")
        assert caught.value.id == "nope"

    async def test_delete_pipeline_keeps_its_runs_and_jobs(self, store: Store) -> None:
        """A deleted pipeline is gone; its runs and their jobs stay."""
        p1 = _pipeline("p1")
        p2 = _pipeline("p2")
        await store.add_pipeline(p1)
        await store.add_pipeline(p2)
        run = _run("r1", p1)
        job = _step_job(run, "build")
        await store.add_run(run, [job])
        await store.delete_pipeline("p1")
        with _raises(PipelineNotFound):
            await store.get_pipeline("p1")
        assert await store.list_pipelines() == [p2]
        assert await store.get_run("r1") == run
        assert await store.list_runs() == [run]
        assert await store.get_job(job.id) == job
        with _raises(PipelineNotFound) as caught:
            await store.delete_pipeline("p1")
        assert caught.value.id == "p1"

    # -- runs --

    async def test_add_run_stores_it_with_its_jobs(self, store: Store) -> None:
        """``add_run`` stores the run and the jobs of its first steps together."""
        pipeline = _pipeline("p1", tenant="ta")
        await store.add_pipeline(pipeline)
        run = _run("r1", pipeline, created_at=_T0 + 1)
        job = _step_job(run, "build", _T0 + 1)
        await store.add_run(run, [job])
        assert await store.get_run("r1") == run
        assert await store.get_job(job.id) == job
        assert await store.list_jobs(JobQuery(run_id="r1")) == [job]
        assert await store.queued_jobs(10) == [job]

    async def test_run_roundtrip_every_field(self, store: Store) -> None:
        """A run comes back with its own copy of the pipeline and every field."""
        pipeline = _pipeline("p1", tenant="ta")
        await store.add_pipeline(pipeline)
        run = Run(
            id="r1",
            pipeline=pipeline,
            state=RunState.FAILED,
            steps=(
                StepRun("build", StepState.FAILED, job_id="r1-build"),
                StepRun("test", StepState.SKIPPED),
            ),
            cancel_requested=True,
            created_at=_T0 + 1.5,
            finished_at=_T0 + 9.25,
        )
        await store.add_run(run, [])
        assert await store.get_run("r1") == run

    async def test_list_runs_oldest_first_by_pipeline(self, store: Store) -> None:
        """Runs are listed oldest first, of one pipeline if asked."""
        p1 = _pipeline("p1")
        p2 = _pipeline("p2")
        await store.add_pipeline(p1)
        await store.add_pipeline(p2)
        runs = [_run("r1", p1, created_at=_T0 + 1), _run("r2", p2, created_at=_T0 + 2)]
        runs.append(_run("r3", p1, created_at=_T0 + 3))
        for run in runs:
            await store.add_run(run, [])
        assert _ids(await store.list_runs()) == ["r1", "r2", "r3"]
        assert await store.list_runs("p1") == [runs[0], runs[2]]
        assert await store.list_runs(pipeline_id="p2") == [runs[1]]
        assert await store.list_runs("nope") == []

    async def test_update_run_replaces_it_and_adds_jobs(self, store: Store) -> None:
        """``update_run`` stores the new run and the new jobs; returns both."""
        pipeline = _pipeline("p1")
        await store.add_pipeline(pipeline)
        run = _run("r1", pipeline)
        build = _step_job(run, "build")
        await store.add_run(run, [build])
        test = _step_job(run, "test", _T0 + 5)
        new_run = attrs.evolve(
            run,
            steps=(
                StepRun("build", StepState.SUCCEEDED, job_id=build.id),
                StepRun("test", StepState.RUNNING, job_id=test.id),
            ),
        )
        after, added = await store.update_run("r1", lambda r: (new_run, [test]))
        assert (after, added) == (new_run, [test])
        assert await store.get_run("r1") == new_run
        assert await store.get_job(test.id) == test
        assert await store.list_jobs(JobQuery(run_id="r1")) == [build, test]

        finished = attrs.evolve(new_run, state=RunState.SUCCEEDED, finished_at=_T0 + 9)
        assert await store.update_run("r1", lambda r: (finished, ())) == (finished, [])
        assert await store.get_run("r1") == finished

    async def test_update_run_change_error_changes_nothing(self, store: Store) -> None:
        """A change function that raises aborts; neither the run nor any job changes."""
        pipeline = _pipeline("p1")
        await store.add_pipeline(pipeline)
        run = _run("r1", pipeline)
        await store.add_run(run, [])
        error = _Boom("no")

        def change(r: Run) -> tuple[Run, Sequence[Job]]:
            raise error

        with _raises(_Boom) as caught:
            await store.update_run("r1", change)
        assert caught.value is error
        assert await store.get_run("r1") == run
        assert await store.list_jobs(JobQuery()) == []

    async def test_get_or_update_unknown_run_raises(self, store: Store) -> None:
        """``get_run`` and ``update_run`` of an unknown id raise ``RunNotFound``."""
        with _raises(RunNotFound) as caught:
            await store.get_run("nope")
        assert caught.value.id == "nope"
        with _raises(RunNotFound):
            await store.update_run("nope", lambda r: (r, ()))

    # -- logs --

    async def test_logs_roundtrip_in_seq_order(self, store: Store) -> None:
        """Chunks come back as stored (stream, data, ts), in ``seq`` order."""
        await store.add_job(_job("j1"))
        chunks = [
            LogChunk(0, Stream.STDOUT, "hello\n", _T0 + 0.5),
            LogChunk(1, Stream.STDERR, "wärning: ✓\r\n", _T0 + 0.75),
            LogChunk(2, Stream.STDOUT, "", _T0 + 1),
            LogChunk(3, Stream.STDOUT, "x" * 70_000, _T0 + 2),
        ]
        await store.append_logs("j1", 1, chunks[:2])
        await store.append_logs("j1", 1, chunks[2:])
        await store.append_logs("j1", 1, [])
        assert await store.read_logs("j1", 1) == chunks

    async def test_append_logs_ignores_a_resent_seq(self, store: Store) -> None:
        """A chunk whose ``seq`` is stored already is ignored, even with other data."""
        await store.add_job(_job("j1"))
        first = [LogChunk(0, Stream.STDOUT, "a", _T0), LogChunk(1, Stream.STDOUT, "b", _T0)]
        await store.append_logs("j1", 1, first)
        resent = [
            LogChunk(1, Stream.STDERR, "B!", _T0 + 9),
            LogChunk(2, Stream.STDOUT, "c", _T0 + 1),
        ]
        await store.append_logs("j1", 1, first)  # the same again: no change
        await store.append_logs("j1", 1, resent)  # seq 1 again with other data: ignored
        assert await store.read_logs("j1", 1) == [*first, resent[1]]

    async def test_read_logs_sorts_chunks_appended_out_of_order(self, store: Store) -> None:
        """Chunks appended out of order are read back in ``seq`` order."""
        await store.add_job(_job("j1"))
        chunks = [LogChunk(i, Stream.STDOUT, f"line {i}\n", _T0 + i) for i in range(6)]
        await store.append_logs("j1", 1, [chunks[3], chunks[1]])
        await store.append_logs("j1", 1, [chunks[5]])
        await store.append_logs("j1", 1, [chunks[0], chunks[4], chunks[2]])
        assert await store.read_logs("j1", 1) == chunks
        assert await store.read_logs("j1", 1, from_seq=2, limit=2) == chunks[2:4]

    async def test_read_logs_from_seq_and_limit(self, store: Store) -> None:
        """``from_seq`` and ``limit`` select a window of the attempt's chunks, gaps allowed."""
        await store.add_job(_job("j1"))
        chunks = [LogChunk(seq, Stream.STDOUT, str(seq), _T0) for seq in [0, 1, 2, 4, 7]]
        await store.append_logs("j1", 1, chunks)
        assert await store.read_logs("j1", 1, from_seq=0) == chunks
        assert await store.read_logs("j1", 1, from_seq=2) == chunks[2:]
        assert await store.read_logs("j1", 1, from_seq=3) == chunks[3:]
        assert await store.read_logs("j1", 1, from_seq=8) == []
        assert await store.read_logs("j1", 1, limit=2) == chunks[:2]
        assert await store.read_logs("j1", 1, from_seq=1, limit=3) == chunks[1:4]
        assert await store.read_logs("j1", 1, limit=0) == []
        assert await store.read_logs("j1", 1, limit=100) == chunks

    async def test_logs_of_attempts_and_jobs_are_kept_apart(self, store: Store) -> None:
        """Each attempt of each job has its own ``seq`` space."""
        await store.add_job(_job("j1"))
        await store.add_job(_job("j2"))
        one = [LogChunk(0, Stream.STDOUT, "j1 attempt 1", _T0)]
        two = [LogChunk(0, Stream.STDOUT, "j1 attempt 2", _T0)]
        other = [LogChunk(0, Stream.STDOUT, "j2", _T0), LogChunk(1, Stream.STDOUT, "j2", _T0)]
        await store.append_logs("j1", 1, one)
        await store.append_logs("j1", 2, two)
        await store.append_logs("j2", 1, other)
        assert await store.read_logs("j1", 1) == one
        assert await store.read_logs("j1", 2) == two
        assert await store.read_logs("j2", 1) == other
        assert await store.read_logs("j1", 3) == []

    async def test_read_logs_of_unknown_job_is_empty(self, store: Store) -> None:
        """An unknown job, or a job without output, has no chunks (not an error)."""
        await store.add_job(_job("j1"))
        assert await store.read_logs("nope", 1) == []
        assert await store.read_logs("j1", 1) == []
