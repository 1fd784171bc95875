"""The SQL store on SQLite (in memory, in a file) and PostgreSQL: the store contract, the
migrations, durability, and what differs between the databases.

PostgreSQL is started by the session (``_postgres_server``); if it cannot start, its tests fail.
The failures, the secrets and several processes are in ``test_sql_store_safety.py``.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NamedTuple

import pytest
import sqlalchemy as sa
import trio

# Readable failures from the contract suites (see test_contracts_memory.py).
if "hodei_core.testing.contracts" not in sys.modules:
    pytest.register_assert_rewrite("hodei_core.testing.contracts")

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from hodei_backends.sql import SqlStore, open_sql_store, upgrade
from hodei_backends.sql._compiled import Tx
from hodei_backends.sql._migrate import alembic_config
from hodei_backends.sql._schema import metadata
from hodei_core import (
    Capacity,
    Job,
    JobSpec,
    LogChunk,
    Resources,
    Stream,
    WorkerRegistration,
)
from hodei_core.errors import StorageError
from hodei_core.ports import Assignment, Store
from hodei_core.testing.contracts import (
    CrossProcessStoreContract,
    DurableStoreContract,
    StoreContract,
    StoreOpener,
)

from ._postgres_server import PostgresServer


class _Refused(Exception):
    """Raised by the tests' own functions."""


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hodei.db'}"


class TestSqliteMemoryStore(StoreContract):
    """``sqlite://``: one database in memory, shared by the store's threads."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[SqlStore]:
        """A fresh, empty store for each test."""
        async with open_sql_store("sqlite://") as store:
            yield store


class TestSqliteFileStore(StoreContract, DurableStoreContract, CrossProcessStoreContract):
    """A SQLite file: durable, and shared by every process that opens it."""

    @pytest.fixture
    def open_store(self, tmp_path: Path) -> StoreOpener:
        """Opens a store on this test's own file, new and empty."""
        url = _sqlite_url(tmp_path)
        return lambda: open_sql_store(url)

    @pytest.fixture
    async def store(self, open_store: StoreOpener) -> AsyncIterator[Store]:
        """A fresh, empty store for each test."""
        async with open_store() as store:
            yield store


class TestPostgresStore(StoreContract, DurableStoreContract, CrossProcessStoreContract):
    """PostgreSQL through psycopg 3; each test starts from an emptied database."""

    @pytest.fixture
    async def open_store(self, postgres: PostgresServer) -> StoreOpener:
        """Opens a store on this test's own database, new and empty."""
        url = await trio.to_thread.run_sync(postgres.fresh_database)
        return lambda: open_sql_store(url)

    @pytest.fixture
    async def store(self, open_store: StoreOpener) -> AsyncIterator[Store]:
        """A fresh, empty store for each test."""
        async with open_store() as store:
            yield store


# -- migrations ---------------------------------------------------------------------------------


def _differences(url: str) -> list[object]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return list(compare_metadata(MigrationContext.configure(connection), metadata))
    finally:
        engine.dispose()


def _revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a database without any table, on each dialect."""
    if request.param == "sqlite":
        return _sqlite_url(tmp_path)
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.empty_database()


def test_migrations_create_exactly_the_schema_of_the_models(empty_database: str) -> None:
    """A database migrated to the latest revision has the tables, columns and indexes of
    ``_schema.metadata``, no more, no less; upgrading again changes nothing."""
    upgrade(empty_database)
    assert _differences(empty_database) == []
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert _revision(empty_database) == head is not None
    upgrade(empty_database)
    assert _differences(empty_database) == []


def test_migrated_indexes_are_those_of_the_models_condition_and_order_included(
    tmp_path: Path,
) -> None:
    """Alembic's comparison ignores a partial index's WHERE and a column's DESC, which the
    queries depend on: on SQLite, the migrated indexes are word for word the models' own."""

    def indexes(engine: sa.Engine) -> list[str]:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
            )
            return sorted(sql for (sql,) in rows)

    upgrade(_sqlite_url(tmp_path))
    migrated = sa.create_engine(_sqlite_url(tmp_path))
    modelled = sa.create_engine(f"sqlite:///{tmp_path / 'models.db'}")
    try:
        metadata.create_all(modelled)
        assert indexes(migrated) == indexes(modelled)
        assert any(" WHERE state = 'queued'" in sql for sql in indexes(migrated))
    finally:
        migrated.dispose()
        modelled.dispose()


def test_migrations_downgrade_to_nothing(tmp_path: Path) -> None:
    """The first revision can be undone (what a later migration's tests build on)."""
    url = _sqlite_url(tmp_path)
    upgrade(url)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            command.downgrade(alembic_config(connection), "base")
        assert sa.inspect(engine).get_table_names() == ["alembic_version"]
    finally:
        engine.dispose()
    upgrade(url)
    assert _differences(url) == []


def test_each_revision_downgrades_to_the_schema_it_upgraded_from(tmp_path: Path) -> None:
    """Down one revision gives exactly the schema of a database upgraded only that far (on
    SQLite, ``sqlite_master``'s text: it keeps what Alembic's comparison ignores, such as an
    index column's DESC)."""

    def schema(url: str) -> list[str]:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(sa.text("SELECT sql FROM sqlite_master"))
                return sorted(sql for (sql,) in rows if sql is not None)
        finally:
            engine.dispose()

    def migrate(url: str, revision: str, *, down: bool = False) -> None:
        engine = sa.create_engine(url)
        try:
            with engine.begin() as connection:
                move = command.downgrade if down else command.upgrade
                move(alembic_config(connection), revision)
        finally:
            engine.dispose()

    script = ScriptDirectory.from_config(alembic_config())
    for revision in script.walk_revisions():
        if revision.down_revision is None:
            continue
        below = str(revision.down_revision)
        (tmp_path / revision.revision).mkdir()
        (tmp_path / f"{revision.revision}-below").mkdir()
        there = _sqlite_url(tmp_path / revision.revision)
        back = _sqlite_url(tmp_path / f"{revision.revision}-below")
        migrate(there, revision.revision)
        migrate(there, below, down=True)
        migrate(back, below)
        assert schema(there) == schema(back), revision.revision


async def test_jobs_stored_before_0002_count_no_unstarted_loss(empty_database: str) -> None:
    """Upgrading a database of revision 0001 keeps its jobs, each with ``unstarted_losses``
    at 0 (on each dialect: the new column is NOT NULL with a default)."""
    engine = sa.create_engine(empty_database)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0001")
            connection.execute(
                sa.text(
                    "INSERT INTO jobs (id, tenant, state, attempt, priority, cpu, memory_mb,"
                    " created_at, spec) VALUES ('j1', 'default', 'queued', 2, 0, 0, 0, 1.5,"
                    " :spec)"
                ),
                {"spec": '{"command": ["true"]}'},
            )
    finally:
        engine.dispose()
    async with open_sql_store(empty_database) as store:  # upgrades to the head
        job = await store.get_job("j1")
    assert (job.attempt, job.unstarted_losses, job.spec.command) == (2, 0, ("true",))
    assert _differences(empty_database) == []


async def test_postgres_plans_each_statement_for_its_values(postgres: PostgresServer) -> None:
    """PostgreSQL plans every execution of the store's prepared statements anew: a generic
    plan chosen while the tables were small would scan them whole once they are large."""
    url = await trio.to_thread.run_sync(postgres.fresh_database)
    async with open_sql_store(url) as store:
        await store.add_job(Job(id="j1", spec=JobSpec(script="true"), created_at=1.0))
        for _ in range(12):  # psycopg prepares on the fifth run; PostgreSQL may go generic after
            assert (await store.get_job("j1")).id == "j1"

        def plans(tx: Tx) -> list[tuple[int, int]]:
            # the reader's own connection: prepared statements belong to a session
            tx.cursor.execute(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE '%FROM jobs%WHERE jobs.id = $1%'"
            )
            return [tuple(row) for row in tx.cursor.fetchall()]

        found = await store._db.read("plans", plans)  # how it plans is what this is about
    assert found, "the lookup by id was not prepared"
    assert all(generic == 0 and custom > 0 for generic, custom in found), found


async def test_a_database_of_a_newer_revision_is_refused(tmp_path: Path) -> None:
    """A database migrated by a newer Hodei (a revision this code does not know) is not
    touched: opening it fails with a ``StorageError`` that says so."""
    url = _sqlite_url(tmp_path)
    upgrade(url)
    with sqlite3.connect(tmp_path / "hodei.db") as other:
        other.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StorageError, match="newer version"):
        async with open_sql_store(url):
            pass


async def test_errors_and_cancellation_in_the_block_come_out_as_they_are() -> None:
    """An exception raised in the ``async with`` block comes out bare, as with a memory store
    (not inside an ExceptionGroup), and a cancellation of the block still cancels."""
    with pytest.raises(_Refused):
        async with open_sql_store("sqlite://"):
            raise _Refused
    with trio.CancelScope() as scope:
        async with open_sql_store("sqlite://") as store:
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert "closed" in repr(store)


# -- what differs between the databases ---------------------------------------------------------


class _Database(NamedTuple):
    """A database the SQL store runs on, and what its types can hold that matters here."""

    scheme: str
    #: whether its text holds U+0000 (PostgreSQL's cannot: the store writes U+FFFD instead)
    keeps_nul: bool


_DATABASES = [_Database("sqlite", keeps_nul=True), _Database("postgresql", keeps_nul=False)]


@pytest.fixture(params=_DATABASES, ids=[database.scheme for database in _DATABASES])
def database(request: pytest.FixtureRequest) -> _Database:
    """Each database in turn; the tests read what it can hold from here, not from its name."""
    found: _Database = request.param
    return found


@pytest.fixture
async def sql_store(
    database: _Database, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SqlStore]:
    """A fresh store on a SQLite file, then on PostgreSQL."""
    if database.scheme == "sqlite":
        url = _sqlite_url(tmp_path)
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = await trio.to_thread.run_sync(server.fresh_database)
    async with open_sql_store(url) as store:
        yield store


async def test_worker_views_hold_plain_numbers(sql_store: SqlStore) -> None:
    """Usage sums are ``int`` and ``float`` (PostgreSQL sums a BIGINT into a NUMERIC)."""
    worker, _, _ = await sql_store.register_worker(
        WorkerRegistration(name="w1", capacity=Capacity(slots=2, memory_mb=1024)),
        "id-w1",
        0.0,
        lambda job: job,
    )
    await sql_store.add_job(Job(id="j1", spec=JobSpec(script="true", resources=Resources(1, 64))))
    await sql_store.assign_jobs([Assignment("j1", 1, worker.id)], 1.0)
    (view,) = await sql_store.worker_views()
    assert (view.used_slots, view.used_cpu, view.used_memory_mb) == (1, 1.0, 64)
    assert (type(view.used_slots), type(view.used_cpu), type(view.used_memory_mb)) == (
        int,
        float,
        int,
    )


async def test_log_chunks_with_nul_characters(sql_store: SqlStore, database: _Database) -> None:
    """Output with NUL characters is stored; a database whose text cannot hold them keeps a
    U+FFFD in their place."""
    await sql_store.append_logs("j1", 1, [LogChunk(0, Stream.STDOUT, "a\x00b", 1.0)])
    (chunk,) = await sql_store.read_logs("j1", 1)
    expected = "a\x00b" if database.keeps_nul else "a\ufffdb"
    assert chunk == LogChunk(0, Stream.STDOUT, expected, 1.0)
