"""Two stores (two server processes, say) on one PostgreSQL database, each running one write
batch of operations that lock the same rows in opposite orders: the batches take their locks
in one order, so they never deadlock.

Each test of two batches holds every writer of both stores on an event, queues each store's
calls behind them, so that each store's calls make one batch in the order they came, then lets
every writer go at once: the two batches run side by side. The database's ``deadlock_timeout``
is short, so that a deadlock costs milliseconds rather than a second; one shows in the
``hodei.sql`` log (the batch is run again, each operation alone), which the tests read.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
import psycopg
import pytest
import trio
import trio.testing

from hodei_backends.sql import SqlStore, open_sql_store
from hodei_backends.sql._compiled import Sql, Tx
from hodei_core import (
    Capacity,
    Job,
    JobSpec,
    JobState,
    Pipeline,
    Run,
    Step,
    TenantUsage,
    Worker,
    WorkerRegistration,
)
from hodei_core import _lifecycle as lifecycle
from hodei_core.ports import Assignment, JobQuery

from ._postgres_server import PostgresServer

SPEC = JobSpec(script="true")
WORKERS = 6
JOBS = 20  # active jobs of a worker that leaves
ROUNDS = 3  # batches of each store per test: each pair of them could deadlock on the old code

Call = Callable[[], Awaitable[Any]]
Params = dict[str, Any]


@attrs.define
class _Pair:
    """Two stores on one database, and what the tests made in it."""

    a: SqlStore
    b: SqlStore
    caplog: pytest.LogCaptureFixture
    workers: list[Worker] = attrs.Factory(list)

    async def register(self, count: int, *, slots: int = 100) -> None:
        for n in range(count):
            registration = WorkerRegistration(name=f"w{n}", capacity=Capacity(slots=slots))
            worker, _, _ = await self.a.register_worker(registration, f"w{n}", 1.0, lambda j: j)
            self.workers.append(worker)

    async def queue_round(self, r: int) -> None:
        """Round ``r``'s jobs: one per worker for each store's side, ``a{r}-{id}`` and
        ``b{r}-{id}``."""
        for side in "ab":
            for worker in self.workers:
                await self.a.add_job(Job(id=f"{side}{r}-{worker.id}", spec=SPEC))

    async def side_by_side(self, a_calls: list[Call], b_calls: list[Call]) -> list[list[Any]]:
        """Each call's result (an exception is a failure of the test), ``a_calls`` in one
        batch of ``a`` and ``b_calls`` in one batch of ``b``, the two batches at once."""
        go = threading.Event()

        def hold(tx: object) -> None:
            # a safety net only: the test sets the event once every call is queued
            assert go.wait(timeout=60), "never let go"

        results: list[list[Any]] = [[None] * len(a_calls), [None] * len(b_calls)]

        async def call(side: int, i: int, fn: Call) -> None:
            results[side][i] = await fn()

        async with trio.open_nursery() as nursery:
            for store in (self.a, self.b):
                # every writer busy: the other writes, and each batch of jobs' own writes (one
                # at a time, or they would make one batch)
                db = store._db
                holds = [functools.partial(db.write, "hold", hold)]
                if db._job_writers is not db._writers:
                    local = functools.partial(db.write, "hold", hold, local=True)
                    holds += [local] * db._job_writers.parallel
                for held in holds:
                    nursery.start_soon(held)
                    await trio.testing.wait_all_tasks_blocked()
            for side, calls in enumerate((a_calls, b_calls)):
                for i, fn in enumerate(calls):
                    nursery.start_soon(call, side, i, fn)
                    await trio.testing.wait_all_tasks_blocked()  # in this order
            go.set()
        return results

    def deadlocks(self) -> list[str]:
        """What the ``hodei.sql`` log said of each deadlock so far."""
        return [
            record.getMessage()
            for record in self.caplog.records
            if "deadlock" in record.getMessage().lower()
        ]


@pytest.fixture
async def pair(postgres: PostgresServer, caplog: pytest.LogCaptureFixture) -> AsyncIterator[_Pair]:
    """Two stores on a database of their own, whose deadlocks are found after 20 ms."""
    url = await trio.to_thread.run_sync(postgres.own_database)
    name = url.rsplit("/", 1)[1]
    await trio.to_thread.run_sync(
        postgres.admin, f"ALTER DATABASE {name} SET deadlock_timeout = 20"
    )
    caplog.set_level(logging.DEBUG, logger="hodei.sql")
    async with open_sql_store(url) as a, open_sql_store(url) as b:
        yield _Pair(a, b, caplog)


def _heartbeat(now: float) -> Callable[[Worker], Worker]:
    return lambda worker: attrs.evolve(worker, last_heartbeat=now)


async def test_heartbeats_then_assignments_in_opposite_orders(pair: _Pair) -> None:
    """The reported case: heartbeats of the same workers, a store in each order, then an
    assignment to all of them, in each batch."""
    await pair.register(WORKERS)
    ids = [worker.id for worker in pair.workers]
    for r in range(ROUNDS):
        await pair.queue_round(r)

        def calls(store: SqlStore, side: str, order: list[str], r: int = r) -> list[Call]:
            beats: list[Call] = [
                functools.partial(store.update_worker, worker_id, _heartbeat(10.0 + r))
                for worker_id in order
            ]
            plan = [Assignment(f"{side}{r}-{worker_id}", 1, worker_id) for worker_id in ids]
            return [*beats, functools.partial(store.assign_jobs, plan, 10.0 + r)]

        a, b = await pair.side_by_side(calls(pair.a, "a", ids), calls(pair.b, "b", ids[::-1]))
        assert [len(assigned) for assigned in (a[-1], b[-1])] == [WORKERS, WORKERS]
    assert pair.deadlocks() == []
    for worker in await pair.a.list_workers():
        assert worker.last_heartbeat == 10.0 + ROUNDS - 1
        assert len(await pair.b.active_jobs(worker.id)) == 2 * ROUNDS


async def test_one_worker_touched_then_all_assigned(pair: _Pair) -> None:
    """A heartbeat (here a touch) of one worker, then an assignment to all: one store touches
    the first worker, the other the last."""
    await pair.register(WORKERS)
    ids = [worker.id for worker in pair.workers]
    for r in range(ROUNDS):
        await pair.queue_round(r)

        def calls(store: SqlStore, side: str, touched: str, r: int = r) -> list[Call]:
            plan = [Assignment(f"{side}{r}-{worker_id}", 1, worker_id) for worker_id in ids]
            return [
                functools.partial(store.touch_workers, [touched], 10.0 + r),
                functools.partial(store.assign_jobs, plan, 10.0 + r),
            ]

        a, b = await pair.side_by_side(calls(pair.a, "a", ids[-1]), calls(pair.b, "b", ids[0]))
        assert [len(a[1]), len(b[1])] == [WORKERS, WORKERS]
    assert pair.deadlocks() == []


async def test_registrations_in_opposite_orders_then_an_assignment(pair: _Pair) -> None:
    """Agents registering again under names already known (found by name, not id), then an
    assignment to all of them."""
    await pair.register(WORKERS)
    ids = [worker.id for worker in pair.workers]
    for r in range(ROUNDS):
        await pair.queue_round(r)

        def calls(store: SqlStore, side: str, order: list[str], r: int = r) -> list[Call]:
            again: list[Call] = [
                functools.partial(
                    store.register_worker,
                    WorkerRegistration(name=name, capacity=Capacity(slots=100)),
                    f"new-{name}",
                    10.0 + r,
                    lambda j: j,
                )
                for name in order
            ]
            plan = [Assignment(f"{side}{r}-{worker_id}", 1, worker_id) for worker_id in ids]
            return [*again, functools.partial(store.assign_jobs, plan, 10.0 + r)]

        names = [worker.name for worker in pair.workers]
        a, b = await pair.side_by_side(calls(pair.a, "a", names), calls(pair.b, "b", names[::-1]))
        # each found its worker by name (and released its jobs as they were)
        found = [worker.id for worker, created, _ in a[:-1] + b[:-1] if not created]
        assert sorted(found) == sorted(ids * 2)
        assert [len(a[-1]), len(b[-1])] == [WORKERS, WORKERS]
    assert pair.deadlocks() == []


async def _given(pair: _Pair, worker: Worker, job_ids: list[str]) -> None:
    """Add these jobs, in this order, and assign them all to ``worker``."""
    for job_id in job_ids:
        await pair.a.add_job(Job(id=job_id, spec=SPEC))
    plan = [Assignment(job_id, 1, worker.id) for job_id in job_ids]
    assert len(await pair.a.assign_jobs(plan, 1.0)) == len(job_ids)


def _leave(store: SqlStore, worker: Worker) -> Call:
    return functools.partial(store.leave_worker, worker.id, lambda j: lifecycle.lose(j, 2.0))


def _handshake(job_id: str) -> tuple[Callable[[Tx], None], Callable[[Tx], None]]:
    """Two operations for two batches: ``wait`` lets ``take`` go on and waits until it has
    taken the row of ``job_id``, if free (it does not wait for it)."""
    reached, taken = threading.Event(), threading.Event()

    # Each waits once, however often it runs (a batch that failed runs again). The waits are
    # safety nets only: the other side comes at once.
    def wait(tx: Tx) -> None:
        reached.set()
        assert taken.wait(timeout=60)

    def take(tx: Tx) -> None:
        assert reached.wait(timeout=60)
        sql = "SELECT id FROM jobs WHERE id = %s FOR UPDATE SKIP LOCKED"
        tx.cursor.execute(sql, (job_id,))
        taken.set()

    return wait, take


def _unchanged(store: SqlStore, job_ids: list[str]) -> list[Call]:
    """An ``update_job`` of each job that leaves it as it is (a stale report, say): one group,
    which locks them all in id order."""
    return [functools.partial(store.update_job, job_id, lambda j: j) for job_id in job_ids]


async def test_workers_leaving_while_their_jobs_are_changed(pair: _Pair) -> None:
    """Two workers leaving in one batch (their active jobs released), while the other store
    changes the same jobs (one ``update_job`` group): those of the first worker to leave sort
    last. The other store's batch starts once the first worker has left, and has the job of
    lowest id by then if it is free: then the two would deadlock if either waited."""
    for r in range(ROUNDS):
        pair.workers.clear()
        await pair.register(2, slots=1000)  # (again: online)
        first, second = pair.workers
        job_ids = [f"{r}-{n:03}" for n in range(2 * JOBS)]
        await _given(pair, first, job_ids[JOBS:])
        await _given(pair, second, job_ids[:JOBS])
        wait, take = _handshake(job_ids[0])
        a_calls: list[Call] = [_leave(pair.a, first)]
        a_calls += [functools.partial(pair.a._db.write, "wait", wait), _leave(pair.a, second)]
        b_calls: list[Call] = [functools.partial(pair.b._db.write, "take", take, local=True)]
        b_calls += _unchanged(pair.b, job_ids)
        a, _ = await pair.side_by_side(a_calls, b_calls)
        released = [job for result in (a[0], a[2]) for job in result[1]]
        assert sorted(job.id for job in released) == job_ids
        assert all(job.state is JobState.QUEUED for job in released)
    assert pair.deadlocks() == []


def _first_waited_for(
    postgres: PostgresServer, url: str, table: str, held: list[str], sql: Sql, params: Params
) -> str:
    """The row of ``table`` that ``sql`` waits for first, while another transaction holds
    the rows ``held`` (their ids)."""
    conninfo = postgres.url(url.rsplit("/", 1)[1]).replace("+psycopg", "")
    with psycopg.connect(conninfo) as holder, psycopg.connect(conninfo) as runner:
        holder.execute(f"SELECT id FROM {table} WHERE id = ANY(%s) FOR UPDATE".encode(), [held])
        runner.execute(b"SET lock_timeout = 10")
        with pytest.raises(psycopg.errors.LockNotAvailable) as raised:
            runner.execute(sql.text.encode(), sql.bind(params))
        # "while locking tuple (0,3) in relation ...": the row it was waiting for
        context = raised.value.diag.context or ""
        match = re.search(r"tuple (\(\d+,\d+\))", context)
        assert match is not None, context
        runner.rollback()
        row = holder.execute(f"SELECT id FROM {table} WHERE ctid = %s".encode(), [match[1]])
        found = row.fetchone()
        holder.rollback()
    assert found is not None
    return str(found[0])


async def test_a_release_and_a_touch_lock_their_rows_in_id_order(
    postgres: PostgresServer,
) -> None:
    """The statements that lock several rows, alone in their transaction, lock them in id
    order: a worker's jobs being released (given to it in the reverse of id order), and the
    workers being touched (added in the reverse of id order). While another transaction holds
    the rows of lowest and highest id, each waits for the lowest first."""
    url = await trio.to_thread.run_sync(postgres.own_database)
    async with open_sql_store(url) as store:
        s = store._db.statements
        worker_ids = [f"w{n}" for n in reversed(range(WORKERS))]
        for worker_id in worker_ids:
            registration = WorkerRegistration(name=worker_id, capacity=Capacity(slots=100))
            await store.register_worker(registration, worker_id, 1.0, lambda j: j)
        job_ids = [f"j{n}" for n in reversed(range(10))]
        for job_id in job_ids:
            await store.add_job(Job(id=job_id, spec=SPEC))
        await store.assign_jobs([Assignment(job_id, 1, "w0") for job_id in job_ids], 1.0)

    release, touch = s.active_jobs_for_update, s.touch_workers
    ends = [min(job_ids), max(job_ids)]
    first = await trio.to_thread.run_sync(
        _first_waited_for, postgres, url, "jobs", ends, release, {"worker_id": "w0"}
    )
    assert first == "j0"
    ends = [min(worker_ids), max(worker_ids)]
    params = {"ids": s.id_list(worker_ids), "now": 5.0}
    first = await trio.to_thread.run_sync(
        _first_waited_for, postgres, url, "workers", ends, touch, params
    )
    assert first == "w0"


async def test_runs_updated_in_opposite_orders(pair: _Pair) -> None:
    """Several runs moved on in one batch of each store (jobs of several pipelines ending at
    once), in opposite orders."""
    pipeline = Pipeline(id="p", name="p", steps=(Step(name="build", spec=SPEC),))
    await pair.a.add_pipeline(pipeline)
    run_ids = [f"r{n}" for n in range(WORKERS)]
    for run_id in run_ids:
        await pair.a.add_run(Run(id=run_id, pipeline=pipeline, steps=()), [])

    def same(run: Run) -> tuple[Run, list[Job]]:
        return run, []

    for _ in range(ROUNDS):
        await pair.side_by_side(
            [functools.partial(pair.a.update_run, run_id, same) for run_id in run_ids],
            [functools.partial(pair.b.update_run, run_id, same) for run_id in run_ids[::-1]],
        )
    assert pair.deadlocks() == []


async def test_admissions_of_several_tenants_in_opposite_orders(pair: _Pair) -> None:
    """Submissions of several tenants with quotas (each checked under its tenant's lock) in
    one batch of each store, in opposite orders."""
    tenants = [f"t{n}" for n in range(WORKERS)]

    def admit(usage: TenantUsage) -> None:
        assert usage.queued < 1000

    def calls(store: SqlStore, side: str, order: list[str], r: int) -> list[Call]:
        return [
            functools.partial(store.add_job, Job(id=f"{side}{r}-{t}", spec=SPEC, tenant=t), admit)
            for t in order
        ]

    for r in range(ROUNDS):
        await pair.side_by_side(
            calls(pair.a, "a", tenants, r), calls(pair.b, "b", tenants[::-1], r)
        )
    assert pair.deadlocks() == []
    assert len(await pair.a.list_jobs(JobQuery(limit=1000))) == 2 * ROUNDS * len(tenants)
