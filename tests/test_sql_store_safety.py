"""The SQL store when things go wrong or get crowded: driver errors, passwords in URLs, calls
batched together (SQLite), and several processes on one database.

PostgreSQL is started by the session (``_postgres_server``); if it cannot start, its tests fail.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from subprocess import PIPE

import attrs
import psycopg
import pytest
import sqlalchemy as sa
import trio

from hodei_backends.sql import SqlStore, open_sql_store
from hodei_backends.sql._compiled import Tx
from hodei_backends.sql._rows import job_row
from hodei_core import (
    Capacity,
    Job,
    JobSpec,
    JobState,
    Worker,
    WorkerRegistration,
)
from hodei_core.errors import JobNotFound, StorageError
from hodei_core.ports import JobQuery

from ._postgres_server import PostgresServer

PASSWORD = "s3cr3t-Pa55"


class _Refused(Exception):
    """Raised by the tests' own functions."""


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hodei.db'}"


# -- group commit (SQLite) ----------------------------------------------------------------------


@pytest.fixture(params=["memory", "file"])
async def sqlite_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """A fresh SQLite store, in memory and in a file."""
    url = "sqlite://" if request.param == "memory" else _sqlite_url(tmp_path)
    async with open_sql_store(url) as store:
        yield store


async def test_operations_batched_together_keep_their_own_outcomes(sqlite_store: SqlStore) -> None:
    """Calls made together share a transaction on SQLite, yet one that raises undoes only its
    own change, and its caller alone gets the error."""
    for i in range(40):
        await sqlite_store.add_job(Job(id=f"j{i}", spec=JobSpec(script="true")))
    errors: dict[int, BaseException] = {}

    def change(i: int) -> Callable[[Job], Job]:
        def bump(job: Job) -> Job:
            if i % 3 == 0:
                raise _Refused(i)
            return attrs.evolve(job, attempt=job.attempt + 1)

        return bump

    async def update(i: int) -> None:
        try:
            await sqlite_store.update_job(f"j{i}", change(i))
        except _Refused as error:
            errors[i] = error

    async def read_nothing() -> None:
        with pytest.raises(JobNotFound):
            await sqlite_store.get_job("nope")

    async with trio.open_nursery() as nursery:
        for i in range(40):
            nursery.start_soon(update, i)
            if i == 20:
                nursery.start_soon(read_nothing)  # a read among them, raising too
    assert sorted(errors) == [i for i in range(40) if i % 3 == 0]
    assert all(error.args == (i,) for i, error in errors.items())
    jobs = {job.id: job for job in await sqlite_store.list_jobs(JobQuery())}
    assert all(jobs[f"j{i}"].attempt == (1 if i % 3 == 0 else 2) for i in range(40))


async def test_a_failed_batch_runs_each_operation_alone(tmp_path: Path) -> None:
    """When a batch's transaction itself fails, each of its operations runs again in a
    transaction of its own, and each caller gets that outcome."""
    async with open_sql_store(_sqlite_url(tmp_path)) as store:
        db = store._db  # the batching is what this test is about
        calls: Counter[str] = Counter()

        def slow(tx: object) -> None:
            time.sleep(0.2)  # keeps the writer busy while the next two queue up together

        def breaks_the_batch(tx: Tx) -> str:
            calls["breaking"] += 1
            if calls["breaking"] == 1:
                tx.cursor.execute("ROLLBACK")  # the batch's transaction is gone with it
            return "done"

        def adds_a_pipeline(tx: Tx) -> int:
            calls["adding"] += 1
            return tx.run(db.statements.delete_pipeline, {"id": "nope"})

        results: dict[str, object] = {}

        async def write(name: str, fn: Callable[[Tx], object]) -> None:
            results[name] = await db.write(name, fn)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(write, "slow", slow)
            await trio.sleep(0.05)
            nursery.start_soon(write, "breaks", breaks_the_batch)
            nursery.start_soon(write, "adds", adds_a_pipeline)
        assert results == {"slow": None, "breaks": "done", "adds": 0}
        # the breaking one ran in the batch and again alone; the other ran alone, and in the
        # batch too if it came first there (trio does not promise the order tasks start in)
        assert calls["breaking"] == 2
        assert calls["adding"] in (1, 2)


# -- errors -------------------------------------------------------------------------------------


async def test_driver_errors_become_storage_errors_sqlite(tmp_path: Path) -> None:
    """A failing database raises ``StorageError`` from the driver's exception; domain errors
    still come through as they are."""
    path = tmp_path / "hodei.db"
    async with open_sql_store(f"sqlite:///{path}") as store:
        with pytest.raises(JobNotFound):
            await store.get_job("nope")
        # break the database under the store's feet
        with sqlite3.connect(path) as other:
            other.execute("DROP TABLE jobs")
        with pytest.raises(StorageError) as caught:
            await store.get_job("nope")
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert "get_job" in str(caught.value)
        assert "no such table: jobs" in str(caught.value)
    with pytest.raises(StorageError, match="closed"):
        await store.get_job("nope")


async def test_driver_errors_become_storage_errors_postgres(postgres: PostgresServer) -> None:
    """The same on PostgreSQL, with the password of the URL nowhere in the error."""
    url = await trio.to_thread.run_sync(postgres.own_database)
    database = url.rsplit("/", 1)[1]
    async with open_sql_store(postgres.url(database, password=PASSWORD)) as store:
        await trio.to_thread.run_sync(postgres.admin, f"DROP DATABASE {database} WITH (FORCE)")
        with pytest.raises(StorageError) as caught:
            await store.add_job(Job(id="j1", spec=JobSpec(script="true")))
    assert isinstance(caught.value.__cause__, (psycopg.Error, sa.exc.DBAPIError))
    assert "add_job" in str(caught.value)
    for text in [str(caught.value), repr(caught.value), str(caught.value.__cause__)]:
        assert PASSWORD not in text


async def test_a_connection_killed_between_calls_costs_at_most_one_call(
    postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store keeps its connections between transactions. One the server dropped fails the
    call that uses it, and is then given up; after a pause, a connection comes from the pool
    again, which checks it first, and no call fails."""
    url = await trio.to_thread.run_sync(postgres.own_database)
    database = url.rsplit("/", 1)[1]
    kill = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    async with open_sql_store(url) as store:
        await store.add_job(Job(id="j1", spec=JobSpec(script="true")))
        await trio.to_thread.run_sync(postgres.admin, kill)
        failed = 0
        for i in range(3):
            try:
                await store.add_job(Job(id=f"j{2 + i}", spec=JobSpec(script="true")))
            except StorageError:
                failed += 1
        assert failed <= 1
        assert len(await store.list_jobs(JobQuery())) == 4 - failed

        # held connections unused "long enough" (here: at once) go back through the pool
        monkeypatch.setattr("hodei_backends.sql._database._HOLD_S", 0.0)
        await trio.to_thread.run_sync(postgres.admin, kill)
        await store.add_job(Job(id="j9", spec=JobSpec(script="true")))
        assert (await store.get_job("j9")).id == "j9"


async def test_an_unreachable_database_is_a_storage_error_without_the_password() -> None:
    """Opening a store on a server that is not there fails with ``StorageError``, and neither
    it nor its cause shows the password."""
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nobody listens there once it is closed
    url = f"postgresql://hodei:{PASSWORD}@127.0.0.1:{port}/hodei"
    with pytest.raises(StorageError) as caught:
        async with open_sql_store(url):
            pass
    assert caught.value.__cause__ is not None
    assert "hodei:***@127.0.0.1" in str(caught.value)
    for text in [str(caught.value), repr(caught.value), str(caught.value.__cause__)]:
        assert PASSWORD not in text


async def test_repr_and_logs_never_show_the_password(
    postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The store's repr, str, URL and log lines show the URL with its password redacted."""
    url = await trio.to_thread.run_sync(postgres.fresh_database)
    caplog.set_level("DEBUG", logger="hodei.sql")
    with_password = postgres.url(url.rsplit("/", 1)[1], password=PASSWORD)
    async with open_sql_store(with_password) as store:
        await store.add_job(Job(id="j1", spec=JobSpec(script="true")))
        for text in [repr(store), str(store), store.url]:
            assert PASSWORD not in text
            assert "postgres:***@127.0.0.1" in text
    assert "closed" in repr(store)
    assert caplog.records, "opening the store logged nothing"
    assert all(PASSWORD not in record.getMessage() for record in caplog.records)


# -- several processes --------------------------------------------------------------------------

# enough rounds (of BATCH, in _sql_assign_process) that one process cannot finish them all
# before the other starts, even on a slow machine
WORKERS, SLOTS, JOBS = 20, 50, 1200


async def _read_line(process: trio.Process) -> bytes:
    """The next line the process writes (without its end), read byte by byte so as not to read
    past it."""
    assert process.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        data = await process.stdout.receive_some(1)
        assert data, f"the process ended without a whole line: {line!r}"
        line += data
    return line.rstrip(b"\n")


async def test_two_processes_assigning_never_overfill_or_assign_twice(tmp_path: Path) -> None:
    """Two processes assigning the same queued jobs to the same workers, each ignoring
    capacity: no job is assigned twice and no worker holds more jobs than it has slots."""
    url = _sqlite_url(tmp_path)
    async with open_sql_store(url) as store:
        for i in range(WORKERS):
            await store.register_worker(
                WorkerRegistration(name=f"w{i}", capacity=Capacity(slots=SLOTS)),
                f"id-w{i}",
                0.0,
                lambda job: job,
            )
        for i in range(JOBS):
            await store.add_job(Job(id=f"j{i:03}", spec=JobSpec(command=("true",))))

    script = Path(__file__).with_name("_sql_assign_process.py")
    outputs: list[bytes] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            processes: list[trio.Process] = []
            for seed in [1, 2]:
                command = [sys.executable, str(script), url, str(seed)]
                run = partial(trio.run_process, command, stdin=PIPE, stdout=PIPE)
                processes.append(await nursery.start(run))
            # both have opened the store: let them assign together
            for process in processes:
                assert await _read_line(process) == b"ready"
            for process in processes:
                assert process.stdin is not None
                await process.stdin.send_all(b"go\n")
            for process in processes:
                assert process.stdout is not None
                outputs.append(b"".join([data async for data in process.stdout]))

    claimed = [tuple(item) for out in outputs for item in json.loads(out)]
    assert all(json.loads(out) for out in outputs), "a process assigned nothing"
    assert len(claimed) == len({job_id for job_id, _, _ in claimed}), "a job assigned twice"
    async with open_sql_store(url) as store:
        assigned = await store.list_jobs(
            JobQuery(states=frozenset({JobState.ASSIGNED}), limit=JOBS)
        )
        assert sorted((j.id, j.attempt, j.worker_id) for j in assigned) == sorted(claimed)
        per_worker = Counter(job.worker_id for job in assigned)
        assert max(per_worker.values()) <= SLOTS
        # the processes stop only when no worker has room left
        assert sorted(per_worker.values()) == [SLOTS] * WORKERS
        queued = await store.list_jobs(JobQuery(states=frozenset({JobState.QUEUED}), limit=JOBS))
        assert len(queued) == JOBS - WORKERS * SLOTS


async def test_an_operation_failing_after_it_wrote_is_undone_alone(tmp_path: Path) -> None:
    """An operation of a batch that raises after writing leaves nothing behind; the others of
    its batch keep their own outcomes."""
    async with open_sql_store(_sqlite_url(tmp_path)) as store:
        db = store._db  # the batching is what this test is about
        statements = db.statements

        def slow(tx: object) -> None:
            time.sleep(0.2)  # keeps the writer busy while the next ones queue up together

        def add(job_id: str, fail: bool) -> Callable[[Tx], None]:
            def write(tx: Tx) -> None:
                tx.run(statements.insert_job, job_row(Job(id=job_id, spec=JobSpec(script="t"))))
                if fail:
                    raise _Refused(job_id)

            return write

        outcomes: dict[str, object] = {}

        async def run(job_id: str, fail: bool) -> None:
            try:
                outcomes[job_id] = await db.write(job_id, add(job_id, fail))
            except _Refused as error:
                outcomes[job_id] = error

        async with trio.open_nursery() as nursery:
            nursery.start_soon(db.write, "slow", slow)
            await trio.testing.wait_all_tasks_blocked()
            for job_id, fail in [("a", False), ("b", True), ("c", False)]:
                nursery.start_soon(run, job_id, fail)
        assert outcomes["a"] is None and outcomes["c"] is None
        assert isinstance(outcomes["b"], _Refused)
        assert sorted(job.id for job in await store.list_jobs(JobQuery())) == ["a", "c"]


async def test_two_stores_registering_one_name_make_one_worker(postgres: PostgresServer) -> None:
    """Two stores (two processes, say) registering the same names at once on PostgreSQL: the
    loser of each race finds the winner's row and updates it, whichever batch it was in."""
    url = await trio.to_thread.run_sync(postgres.own_database)
    names = [f"agent-{n}" for n in range(20)]
    results: list[tuple[Worker, bool, list[Job]]] = []
    async with open_sql_store(url) as one, open_sql_store(url) as two:

        async def register(store: SqlStore, name: str, n: int) -> None:
            registration = WorkerRegistration(name=name)
            results.append(await store.register_worker(registration, f"w-{n}", 1.0, lambda j: j))

        async with trio.open_nursery() as nursery:
            for n, name in enumerate(names):
                nursery.start_soon(register, one, name, 2 * n)
                nursery.start_soon(register, two, name, 2 * n + 1)
        workers = await one.list_workers()
    assert sorted(w.name for w in workers) == sorted(names)
    assert sum(created for _, created, _ in results) == len(names)
    by_name = {w.name: w.id for w in workers}
    assert all(worker.id == by_name[worker.name] for worker, _, _ in results)
