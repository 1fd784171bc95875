"""A PostgreSQL write batch whose transaction a statement broke: every operation in it runs
again alone, rather than the commit rolling back, unsaid, what the others were told they did.

PostgreSQL takes no more statements in a transaction after one failed, and its COMMIT then
rolls back without an error: an error taken for an operation's own (a quota's refusal, say)
must not hide that.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest
import trio
import trio.testing

from hodei_backends.sql import SqlStore, open_sql_store
from hodei_backends.sql._compiled import Tx
from hodei_backends.sql._locks import tenant_lock_key
from hodei_core import Job, JobSpec, TenantUsage
from hodei_core.errors import StorageError
from hodei_core.ports import JobQuery

from ._postgres_server import PostgresServer

SPEC = JobSpec(script="true")


@pytest.fixture
async def store(postgres: PostgresServer) -> AsyncIterator[SqlStore]:
    """A store on a database of its own, where a lock not had in 50 ms is an error."""
    url = await trio.to_thread.run_sync(postgres.own_database)
    name = url.rsplit("/", 1)[1]
    await trio.to_thread.run_sync(postgres.admin, f"ALTER DATABASE {name} SET lock_timeout = 50")
    async with open_sql_store(url) as the_store:
        yield the_store


async def _one_batch(store: SqlStore, *calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Each call's result or exception, the calls queued behind a held writer, in this order,
    so that they make one batch."""
    go = threading.Event()

    def hold(tx: object) -> None:
        assert go.wait(timeout=60)  # a safety net only: set once every call is queued

    results: list[Any] = [None] * len(calls)

    async def call(i: int) -> None:
        try:
            results[i] = await calls[i]()
        except Exception as error:
            results[i] = error

    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(store._db.write, "hold", hold))
        await trio.testing.wait_all_tasks_blocked()
        for i in range(len(calls)):
            nursery.start_soon(call, i)
            await trio.testing.wait_all_tasks_blocked()
        go.set()
    return results


def _admit(usage: TenantUsage) -> None:
    """No quota to speak of: an admission check that takes the tenant's lock."""


async def test_a_failed_admission_check_fails_the_batch_not_the_job(
    store: SqlStore, postgres: PostgresServer
) -> None:
    """The tenant's admission lock cannot be had (another transaction holds it): the add that
    needed it gets a ``StorageError``, not a refusal nor the driver's error, and the adds
    before it in the batch are stored, as their callers were told."""
    s = store._db.statements
    assert s.tenant_lock is not None
    conninfo = postgres.url(store.url.rsplit("/", 1)[1]).replace("+psycopg", "")
    with psycopg.connect(conninfo) as other:
        other.execute(
            s.tenant_lock.text.encode(), s.tenant_lock.bind({"key": tenant_lock_key("t")})
        )
        before, checked = await _one_batch(
            store,
            lambda: store.add_job(Job(id="before", spec=SPEC, tenant="t")),
            lambda: store.add_job(Job(id="checked", spec=SPEC, tenant="t"), _admit),
        )
        other.rollback()
    assert before is None
    assert isinstance(checked, StorageError), repr(checked)
    assert [job.id for job in await store.list_jobs(JobQuery())] == ["before"]


async def test_a_batch_whose_transaction_broke_unnoticed_runs_again(store: SqlStore) -> None:
    """An operation that takes a failed statement's error for its own (here: ignores it) while
    others in its batch wrote: the batch runs again, each operation alone."""
    ran: list[str] = []

    def swallows_an_error(tx: Tx) -> str:
        ran.append("swallows")
        with contextlib.suppress(psycopg.errors.DivisionByZero):
            tx.cursor.execute("SELECT 1 / 0")
        return "ignored"

    added, swallowed = await _one_batch(
        store,
        lambda: store.add_job(Job(id="added", spec=SPEC)),
        lambda: store._db.write("swallows", swallows_an_error),
    )
    assert (added, swallowed) == (None, "ignored")
    assert ran == ["swallows", "swallows"]  # in the batch, then alone
    assert [job.id for job in await store.list_jobs(JobQuery())] == ["added"]
