"""Calls of the SQL store that go to the database together: ``update_job`` and ``add_job`` calls
of one batch run as one group (one read, one write per kind of change), and on SQLite many rows
go in one statement (``_bulk``).

Each test holds the writer busy for a moment, so that the calls it makes next queue up and go
in one batch, as calls arriving together do under load.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import hypothesis.strategies as st
import pytest
import trio
import trio.testing
from hypothesis import given

from hodei_backends.sql import SqlStore, open_sql_store
from hodei_backends.sql._bulk import Values
from hodei_core import (
    Capacity,
    Job,
    JobSpec,
    JobState,
    LogChunk,
    Stream,
    TenantUsage,
    WorkerRegistration,
)
from hodei_core.errors import JobNotFound, QuotaExceeded
from hodei_core.ports import Assignment, JobQuery

from ._postgres_server import PostgresServer

SPEC = JobSpec(script="true")


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresServer
) -> AsyncIterator[SqlStore]:
    """A fresh store in a SQLite file, and one in PostgreSQL."""
    url = f"sqlite:///{tmp_path / 'hodei.db'}"
    if request.param == "postgresql":
        url = postgres.own_database()
    async with open_sql_store(url) as the_store:
        yield the_store


async def _together(store: SqlStore, *calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Each call's result (or exception), the calls made while the writer is busy, so that
    they run in one batch."""

    def busy(tx: object) -> None:
        time.sleep(0.2)

    results: list[Any] = [None] * len(calls)

    async def call(i: int) -> None:
        try:
            results[i] = await calls[i]()
        except Exception as error:
            results[i] = error

    db = store._db
    async with trio.open_nursery() as nursery:
        # every writer busy: the other writes, and each of the batches of jobs' own writes
        # that may run at once (several on PostgreSQL)
        nursery.start_soon(functools.partial(db.write, "busy", busy))
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(db._job_writers.parallel if db._job_writers is not db._writers else 0):
            nursery.start_soon(functools.partial(db.write, "busy", busy, local=True))
            await trio.testing.wait_all_tasks_blocked()
        for i in range(len(calls)):
            nursery.start_soon(call, i)
            await trio.testing.wait_all_tasks_blocked()  # in this order
    return results


def _bump(job: Job) -> Job:
    return attrs.evolve(job, attempt=job.attempt + 1)


def _refuse(job: Job) -> Job:
    raise ValueError(job.id)


async def test_one_job_changed_twice_in_a_batch_sees_its_own_change(store: SqlStore) -> None:
    await store.add_job(Job(id="a", spec=SPEC))
    await store.add_job(Job(id="b", spec=SPEC))
    first, refused, second, missing, other = await _together(
        store,
        lambda: store.update_job("a", _bump),
        lambda: store.update_job("a", _refuse),
        lambda: store.update_job(
            "a", lambda j: attrs.evolve(j, state=JobState.CANCELLED, finished_at=5.0)
        ),
        lambda: store.update_job("nope", _bump),
        lambda: store.update_job("b", _bump),
    )
    assert (first[0].attempt, first[1].attempt) == (1, 2)
    assert isinstance(refused, ValueError) and refused.args == ("a",)
    assert second[0] == first[1]  # the second change starts from the first one's job
    assert second[1].state is JobState.CANCELLED and second[1].attempt == 2
    assert isinstance(missing, JobNotFound)
    assert other[1].attempt == 2
    assert await store.get_job("a") == second[1]
    assert await store.get_job("b") == other[1]


async def test_adds_in_a_batch_are_admitted_in_order_each_seeing_the_ones_before(
    store: SqlStore,
) -> None:
    def at_most_three(usage: TenantUsage) -> None:
        if usage.queued >= 3:
            raise QuotaExceeded("default", "max_queued", 1.0)

    def add(i: int, admit: bool) -> Callable[[], Awaitable[None]]:
        job = Job(id=f"j{i}", spec=SPEC, created_at=float(i))
        return lambda: store.add_job(job, at_most_three if admit else None)

    # unchecked adds among checked ones: every one before a check counts
    plan = [(0, True), (1, False), (2, True), (3, True), (4, False), (5, True)]
    results = await _together(store, *(add(i, admit) for i, admit in plan))
    refused = [i for (i, _), result in zip(plan, results, strict=True) if result is not None]
    assert refused == [3, 5]
    assert all(isinstance(results[i], QuotaExceeded) for i in refused)
    stored = await store.list_jobs(JobQuery())
    assert [job.id for job in stored] == ["j0", "j1", "j2", "j4"]
    assert [job.created_at for job in stored] == [0.0, 1.0, 2.0, 4.0]


async def test_a_duplicate_id_in_a_batch_of_adds_fails_that_add_alone(store: SqlStore) -> None:
    await store.add_job(Job(id="taken", spec=SPEC))
    results = await _together(
        store,
        lambda: store.add_job(Job(id="x", spec=SPEC)),
        lambda: store.add_job(Job(id="taken", spec=SPEC)),
        lambda: store.add_job(Job(id="y", spec=SPEC)),
    )
    assert results[0] is None and results[2] is None and results[1] is not None
    assert sorted(job.id for job in await store.list_jobs(JobQuery())) == ["taken", "x", "y"]


@pytest.mark.parametrize("count", [2, 3, 31, 32, 33, 64, 65, 100, 300])
async def test_many_rows_in_one_call_are_all_written(store: SqlStore, count: int) -> None:
    """Rows in pieces of many (``_bulk``): the chunks of one append, the new jobs of
    one run-less burst, and one assignment of many jobs, all read back as written."""
    jobs = [Job(id=f"j{i:03}", spec=SPEC, created_at=i / 7) for i in range(count)]
    await _together(store, *(lambda job=job: store.add_job(job) for job in jobs))
    assert await store.list_jobs(JobQuery(limit=1000)) == jobs

    chunks = [LogChunk(i, Stream.STDERR, f"line {i}\x00\n", i / 3) for i in range(count)]
    await store.append_logs("j000", 1, chunks)
    read = await store.read_logs("j000", 1)
    assert [c.seq for c in read] == list(range(count))
    assert [c.ts for c in read] == [c.ts for c in chunks]
    await store.append_logs("j000", 1, chunks)  # again: resent chunks are ignored
    assert len(await store.read_logs("j000", 1)) == count

    worker, _, _ = await store.register_worker(
        WorkerRegistration(name="w", capacity=Capacity(slots=count)), "w-1", 1.0, lambda j: j
    )
    assigned = await store.assign_jobs([Assignment(job.id, 1, worker.id) for job in jobs], now=9.5)
    assert sorted(j.id for j in assigned) == [j.id for j in jobs]
    stored = await store.list_jobs(JobQuery(limit=1000))
    assert all(j.state is JobState.ASSIGNED and j.worker_id == worker.id for j in stored)
    assert all(j.assigned_at == 9.5 for j in stored)
    assert stored == sorted(assigned, key=lambda j: j.id)


@given(rows=st.integers(0, 1000), width=st.integers(1, 40))
def test_bulk_pieces_are_powers_of_two_that_add_up(rows: int, width: int) -> None:
    bulk = Values(lambda n: f"{n}", [f"c{i}" for i in range(width)])
    sizes = list(bulk.sizes(rows))
    assert sum(sizes) == rows
    assert all(size & (size - 1) == 0 and 0 < size <= bulk.largest for size in sizes)
    assert sizes == sorted(sizes, reverse=True)
    assert bulk.largest * width <= 999
    # at most one piece of each size below the largest
    smaller = [size for size in sizes if size < bulk.largest]
    assert len(smaller) == len(set(smaller))
