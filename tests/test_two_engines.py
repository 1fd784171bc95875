"""Several engine processes on one database, with NATS between them, and an engine killed in
the middle of a run.

Each engine is a real process (``_engine_process.py``) running ``open_embedded`` with its own
ten workers; the jobs are Python (``CallableExecutor``) that note, line by line, every attempt
they run and on which worker. The test reads those notes and the store, and checks what the
issue promises: no job assigned twice, no worker over its capacity, every accepted job ends,
none runs twice.

PostgreSQL and nats-server are started by the session (``_postgres_server``, ``_nats_server``);
if they cannot start, these tests fail.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio

from hodei_backends import open_store
from hodei_core import FailureReason, JobState, WorkerState
from hodei_core.ports import JobQuery

from ._engine_process import EngineSettings
from ._engines import (
    POLL_S,
    CapacityWatch,
    Execution,
    all_jobs,
    check_capacity,
    check_each_ran_once,
    count_jobs,
    engine_process,
    poll_until,
    start_together,
    wait_until_all_finished,
)
from ._nats_server import NatsServer
from ._postgres_server import PostgresServer

SUCCEEDED = frozenset({JobState.SUCCEEDED})
RUNNING = frozenset({JobState.RUNNING})

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store that several processes can open: a SQLite file, or a
    PostgreSQL database of this test's own (an engine killed mid-transaction must not leave
    anything behind for the next test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hodei.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return await trio.to_thread.run_sync(server.own_database)


# -- the tests ----------------------------------------------------------------------------------

JOBS, SLOTS = 10_000, 4


async def test_two_engines_on_one_database_assign_each_job_once(
    database: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    """Two engine processes, one database, NATS between them, 20 workers, 10,000 jobs
    submitted half by each: every job runs once, on one worker, never on a full one, and ends
    succeeded at its first attempt."""
    settings = [
        EngineSettings(
            store=database,
            bus=nats_server.url,
            records=str(tmp_path / f"{name}.jsonl"),
            name_prefix=name,
            workers=10,
            slots=SLOTS,
            submit=JOBS // 2,
        )
        for name in ["a", "b"]
    ]
    # The test opens the store first, so that its schema is in place before the engines start.
    async with open_store(database) as store, AsyncExitStack() as stack:
        engines = [await stack.enter_async_context(engine_process(s, tmp_path)) for s in settings]
        watch = CapacityWatch(store, SLOTS)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch.run)
            await start_together(engines)
            await wait_until_all_finished(store, 300)
            nursery.cancel_scope.cancel()
        for engine in engines:
            await engine.stop()
        jobs = await all_jobs(store)
        workers = {worker.id: worker for worker in await store.list_workers()}

    records = {engine.name: engine.records() for engine in engines}
    accepted = [job_id for r in records.values() for job_id in r.accepted]
    assert len(accepted) == JOBS
    assert set(accepted) == set(jobs), "the store and the engines disagree on the jobs"
    assert len(jobs) == JOBS
    executions = check_each_ran_once(jobs, records)
    # and the worker each ran on is its engine's own
    assert all(workers[e.worker].name.startswith(f"{e.engine}-") for e in executions)
    check_capacity(executions, watch, SLOTS)
    # the fleet was full at times, so that a worker taking one job too many would have shown
    assert max(e.load for e in executions) == SLOTS
    # both engines took part: the jobs of each were spread over the whole fleet
    assert all(len(r.executions) > JOBS // 10 for r in records.values())
    assert len({e.worker for e in executions}) == 20


KILLED_JOBS = 2_000
AGAIN_JOBS = 500  # submitted by the restarted engine, so that it has work of its own
# Short, so that the workers of the killed engine are found lost soon; yet twenty heartbeats
# long, so that a live worker of a busy engine on a busy machine is not.
LOST_AFTER_S = 5.0


async def test_an_engine_killed_mid_run_loses_no_job_and_runs_none_twice(
    database: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    """``kill -9`` of an engine while it submits and runs jobs; a fresh engine on the same
    database finds its workers lost and sends their jobs back (``attempt + 1``, or
    ``failed(worker_lost)`` once retries are spent; one that had not started costs no
    retry); then the killed engine is started again
    beside it, with its workers, and submits more. Every accepted job ends, no attempt runs
    twice, and nothing that had ended changes."""

    def settings(name: str, records: str, submit: int = 0) -> EngineSettings:
        return EngineSettings(
            store=database,
            bus=nats_server.url,
            records=str(tmp_path / f"{records}.jsonl"),
            name_prefix=name,
            workers=10,
            slots=SLOTS,
            submit=submit,
            retries_every=2,  # half the jobs can be run again once
            job_s=0.02,  # long enough that a kill finds jobs running
            lost_after_s=LOST_AFTER_S,
            heartbeat_interval_s=0.25,
        )

    async with open_store(database) as store, AsyncExitStack() as stack:
        watch = CapacityWatch(store, SLOTS)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch.run)
            first = await stack.enter_async_context(
                engine_process(settings("a", "first", KILLED_JOBS), tmp_path)
            )
            await first.tell("go")

            async def some_ended() -> bool:
                return await count_jobs(store, SUCCEEDED, KILLED_JOBS // 5) >= KILLED_JOBS // 5

            await poll_until(some_ended, 120)
            # Kill it while jobs with and without a retry left run. It is frozen before the
            # test looks, so that what the test sees is what the kill leaves: running, it could
            # end every job it runs between the look and the kill (its jobs tend to start, and
            # so end, in batches).
            with trio.fail_after(60):
                while True:
                    first.freeze()
                    running = await store.list_jobs(JobQuery(states=RUNNING, limit=1000))
                    if {job.spec.retries for job in running} == {0, 1}:
                        break
                    first.thaw()
                    await trio.sleep(POLL_S)
            await first.kill()
            at_kill = await all_jobs(store)

            # a fresh engine, with other workers, finds those of the dead one lost
            fresh = await stack.enter_async_context(
                engine_process(settings("b", "fresh"), tmp_path)
            )
            await start_together([fresh])

            async def dead_workers_lost() -> bool:
                workers = [w for w in await store.list_workers() if w.name.startswith("a-")]
                return all(w.state is WorkerState.LOST for w in workers)

            await poll_until(dead_workers_lost, 10 * LOST_AFTER_S)
            # and the killed engine comes back, as a restarted server would, with its workers
            again = await stack.enter_async_context(
                engine_process(settings("a", "again", AGAIN_JOBS), tmp_path)
            )
            await start_together([again])
            await wait_until_all_finished(store, 300)
            nursery.cancel_scope.cancel()
        for engine in [fresh, again]:
            await engine.stop()
        jobs = await all_jobs(store)

    before_kill, fresh_records, again_records = (p.records() for p in [first, fresh, again])
    accepted = before_kill.accepted
    assert set(accepted) <= set(at_kill), "a job the engine accepted is not in the store"
    by_state = Counter(job.state for job in at_kill.values())
    assert by_state[JobState.RUNNING] > 0, f"no job was running at the kill: {by_state}"
    submitted_again = again_records.accepted
    assert len(submitted_again) == AGAIN_JOBS
    assert set(jobs) == set(at_kill) | set(submitted_again), "jobs appeared or vanished"
    assert all(job.is_finished for job in jobs.values())

    after_kill = fresh_records.executions + again_records.executions
    executions = before_kill.executions + after_kill
    attempts = Counter((e.job, e.attempt) for e in executions)
    twice = [key for key, count in attempts.items() if count > 1]
    assert not twice, f"{len(twice)} attempts ran more than once, e.g. {twice[:3]}"
    assert fresh_records.executions and again_records.executions, "an engine ran nothing"
    ran: defaultdict[str, list[Execution]] = defaultdict(list)
    ran_after: defaultdict[str, list[Execution]] = defaultdict(list)
    for e in executions:
        ran[e.job].append(e)
    for e in after_kill:
        ran_after[e.job].append(e)

    for job_id, job in jobs.items():
        before = at_kill.get(job_id)
        after = ran_after[job_id]
        assert all(e.attempt <= job.attempt for e in ran[job_id]), (job, ran[job_id])
        if before is None:
            # submitted after the restart, when every worker was alive: nothing was lost
            assert (job.state, job.attempt) == (JobState.SUCCEEDED, 1), job
        elif before.is_finished:
            # what had ended stays as it was, and is not run again
            assert job == before
            assert not after, (before, after)
        elif before.state.is_active:
            # the attempt that the dead engine held is over: it is never run by another, and
            # the job is queued again as the next attempt, or fails if it had no retry left;
            # an attempt that had not started costs no retry (nor does any later one given to
            # a dead worker before the reaper found it), so only started ones are counted
            assert all(e.attempt > before.attempt for e in after), (before, after)
            counted = before.attempt - before.unstarted_losses
            if before.state is JobState.ASSIGNED:
                assert job.attempt > before.attempt, (before, job)
                assert job.attempt - job.unstarted_losses == counted, (before, job)
            elif counted <= before.spec.retries:
                assert job.attempt > before.attempt, (before, job)
                assert job.attempt - job.unstarted_losses == counted + 1, (before, job)
            else:
                assert (job.attempt, job.failure) == (before.attempt, FailureReason.WORKER_LOST)
        if job.state is JobState.SUCCEEDED:
            # the attempt the store calls the last one is the one that ran to the end
            assert any(
                e.attempt == job.attempt and e.worker == job.worker_id and e.ended
                for e in ran[job_id]
            ), (job, ran[job_id])
        else:
            # the jobs themselves never fail: only a lost worker with no retries left does
            assert (job.state, job.failure) == (JobState.FAILED, FailureReason.WORKER_LOST)
            assert job.attempt == job.spec.retries + 1, job
    # both ends of the lost-worker path were taken
    lost = [job for job in jobs.values() if job.id in at_kill and at_kill[job.id].state.is_active]
    assert any(job.attempt == 2 for job in lost)
    assert any(job.failure is FailureReason.WORKER_LOST and job.attempt == 1 for job in lost)
    check_capacity(executions, watch, SLOTS)
