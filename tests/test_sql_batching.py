"""The batcher of the SQL store (``_batching``): batches side by side up to ``parallel``, callers
that leave before their batch runs, and closing; and on PostgreSQL, writes of different jobs
that do not wait for each other.

PostgreSQL is started by the session (``_postgres_server``); if it cannot start, its tests fail.
"""

from __future__ import annotations

import threading
from typing import Any

import attrs
import outcome
import psycopg
import pytest
import trio
import trio.testing

from hodei_backends.sql import open_sql_store
from hodei_backends.sql._batching import Batcher, Operation
from hodei_core import Job, JobSpec
from hodei_core.errors import StorageError

from ._postgres_server import PostgresServer

_PATIENCE_S = 10.0


class _Gate:
    """A ``run_batch`` whose batches wait in their threads until opened, and that notes how many
    ran at once and what each held."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open = threading.Event()
        self.entered = threading.Semaphore(0)
        self.running = 0
        self.most = 0
        self.batches: list[list[str]] = []

    def __call__(self, batch: list[Operation[Any]]) -> None:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.batches.append([op.what for op in batch])
        self.entered.release()
        self.open.wait(_PATIENCE_S)  # bounded: a failing test must not hang
        with self._lock:
            self.running -= 1
        for op in batch:
            op.result = outcome.Value(op.what)

    async def wait_entered(self, count: int) -> None:
        for _ in range(count):
            entered = await trio.to_thread.run_sync(self.entered.acquire, True, _PATIENCE_S)
            assert entered, "a batch did not start"


def _op(what: str) -> Operation[str]:
    return Operation(what, _never, write=True)


def _never(tx: object) -> str:  # pragma: no cover - the gate sets results itself
    raise AssertionError("not called")


async def _submit_each(
    nursery: trio.Nursery, batcher: Batcher, names: list[str], results: dict[str, Any]
) -> None:
    """Submit one operation per name, in this order, each once the ones before wait."""

    async def submit(name: str) -> None:
        try:
            results[name] = await batcher.submit(_op(name))
        except (StorageError, trio.Cancelled) as error:
            results[name] = error
            if isinstance(error, trio.Cancelled):
                raise

    for name in names:
        nursery.start_soon(submit, name)
        await trio.testing.wait_all_tasks_blocked()


async def test_batches_run_side_by_side_up_to_parallel() -> None:
    gate = _Gate()
    batcher = Batcher(gate, "test", parallel=3)
    results: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.serve)
        async with trio.open_nursery() as callers:
            await _submit_each(callers, batcher, ["a", "b", "c", "d", "e", "f"], results)
            await gate.wait_entered(3)
            # three batches run, the other calls wait for a slot, together
            assert gate.running == 3 and not results
            gate.open.set()
        nursery.cancel_scope.cancel()
    assert gate.most == 3
    # (threads started together enter in any order)
    assert sorted(gate.batches[:3]) == [["a"], ["b"], ["c"]]
    assert gate.batches[3] == ["d", "e", "f"]
    assert results == {name: name for name in "abcdef"}


async def test_one_batch_at_a_time_by_default() -> None:
    gate = _Gate()
    batcher = Batcher(gate, "test")
    results: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.serve)
        async with trio.open_nursery() as callers:
            await _submit_each(callers, batcher, ["a", "b", "c"], results)
            await gate.wait_entered(1)
            gate.open.set()
        nursery.cancel_scope.cancel()
    assert gate.most == 1
    assert gate.batches == [["a"], ["b", "c"]]


async def test_a_caller_cancelled_while_its_batch_waits_leaves_it() -> None:
    gate = _Gate()
    batcher = Batcher(gate, "test", parallel=2)
    results: dict[str, Any] = {}
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.serve)
        async with trio.open_nursery() as callers:
            await _submit_each(callers, batcher, ["a", "b"], results)
            await gate.wait_entered(2)
            with trio.CancelScope() as leaving:
                async with trio.open_nursery() as inner:
                    await _submit_each(inner, batcher, ["gone"], results)
                    leaving.cancel()
            await _submit_each(callers, batcher, ["c"], results)
            gate.open.set()
        nursery.cancel_scope.cancel()
    assert isinstance(results["gone"], trio.Cancelled)
    assert sorted(gate.batches) == [["a"], ["b"], ["c"]]
    assert [results[name] for name in "abc"] == ["a", "b", "c"]


async def test_closing_lets_running_batches_end_and_fails_the_waiting_calls() -> None:
    gate = _Gate()
    batcher = Batcher(gate, "test", parallel=2)
    results: dict[str, Any] = {}
    async with trio.open_nursery() as outer, trio.open_nursery() as nursery:
        await nursery.start(batcher.serve)
        await _submit_each(outer, batcher, ["a", "b", "c"], results)
        await gate.wait_entered(2)
        nursery.cancel_scope.cancel()  # the store closes: serve ends
        # it waits for the running batches, which end when the gate opens
        outer.start_soon(trio.to_thread.run_sync, gate.open.set)
    assert results["a"] == "a" and results["b"] == "b"
    assert isinstance(results["c"], StorageError)
    assert "closed before it ran" in str(results["c"])
    with pytest.raises(StorageError, match="closed"):
        await batcher.submit(_op("late"))


def test_parallel_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Batcher(lambda batch: None, "test", parallel=0)


async def test_postgres_writes_of_one_job_do_not_hold_up_another_jobs(
    postgres: PostgresServer,
) -> None:
    """A change of a job whose row another transaction locks waits; a change of another job
    meanwhile goes through (its batch runs beside the waiting one)."""
    url = await trio.to_thread.run_sync(postgres.own_database)
    spec = JobSpec(script="true")
    async with open_sql_store(url) as store:
        await store.add_job(Job(id="a", spec=spec))
        await store.add_job(Job(id="b", spec=spec))
        database = url.rsplit("/", 1)[1]
        locker = await trio.to_thread.run_sync(
            psycopg.connect, postgres.url(database).replace("+psycopg", "")
        )
        try:
            await trio.to_thread.run_sync(
                locker.execute, "SELECT id FROM jobs WHERE id = 'a' FOR UPDATE"
            )
            changed: dict[str, Any] = {}

            def bump(job: Job) -> Job:
                return attrs.evolve(job, attempt=job.attempt + 1)

            async def change(job_id: str) -> None:
                changed[job_id] = await store.update_job(job_id, bump)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(change, "a")
                await trio.testing.wait_all_tasks_blocked()
                try:
                    with trio.fail_after(10):
                        await change("b")
                    assert "a" not in changed  # still waiting for the lock
                finally:
                    await trio.to_thread.run_sync(locker.rollback)
        finally:
            await trio.to_thread.run_sync(locker.close)
        assert changed["a"][1].attempt == 2 and changed["b"][1].attempt == 2
