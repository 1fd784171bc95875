"""Engines for database URLs, and the translation of driver errors into ``StorageError``.

Driver exceptions (SQLAlchemy's, sqlite3's, psycopg's) are turned into ``StorageError`` at the
store's boundary (``translate_errors``, ``storage_error``); anything else, like the domain errors
a change function raises, goes through untouched. Messages show URLs with their password
redacted, and statement parameters (job specs hold secrets) are never shown.

SQLite: a file database runs in WAL mode (readers never wait for the writer) with a busy timeout
(writers of other processes wait their turn), and every write transaction starts with ``BEGIN
IMMEDIATE``, so that it holds the write lock before it reads what it will change: two processes
cannot interleave a read-modify-write. Python's ``sqlite3`` would only ``BEGIN`` (deferred) before
the first write, so the store takes over ``BEGIN`` as in SQLAlchemy's "serializable isolation"
recipe. ``sqlite://`` is one in-memory database on one connection that every thread shares.

PostgreSQL: psycopg 3, a connection pool, and row locks (``FOR UPDATE``) on what a change reads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc, pool
from sqlalchemy.engine import Connection, Engine

from hodei_core.errors import StorageError

from .._registry import UnknownScheme, redact_url

__all__ = [
    "DRIVER_ERRORS",
    "WRITE",
    "create_engine",
    "is_memory",
    "retryable",
    "storage_error",
    "translate_errors",
]

#: How long a SQLite writer waits for another process's write transaction to end.
SQLITE_BUSY_TIMEOUT_S = 30.0

# PostgreSQL SQLSTATEs after which a transaction may simply run again: a serialization failure
# or a deadlock (neither is expected with the lock order kept, but both are harmless to retry),
# and, for the operations that ask, a unique violation (two processes registering one name).
_RETRYABLE = frozenset({"40001", "40P01"})
_UNIQUE_VIOLATION = "23505"

#: The execution option that marks a SQLAlchemy connection as writing (BEGIN IMMEDIATE).
WRITE = "hodei_write"

DRIVER_ERRORS: tuple[type[BaseException], ...] = (exc.SQLAlchemyError, sqlite3.Error)
try:  # the postgres extra may not be installed, and then no psycopg error can happen either
    import psycopg
except ImportError:  # pragma: no cover - depends on the extras installed
    pass
else:
    DRIVER_ERRORS += (psycopg.Error,)


def _describe(error: BaseException) -> str:
    cause = error.orig if isinstance(error, exc.DBAPIError) else error
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else '(no message)'}"


def storage_error(what: str, url: str, error: BaseException) -> StorageError:
    """The ``StorageError`` that stands for ``error``, a driver exception, with it as cause."""
    # the driver's text may quote a connection string: redact it too
    translated = StorageError(redact_url(f"{what} failed on {redact_url(url)}: {_describe(error)}"))
    translated.__cause__ = error
    return translated


@contextmanager
def translate_errors(what: str, url: str) -> Iterator[None]:
    """Turn a driver exception raised in the block into ``StorageError`` (``from`` it).

    Args:
        what: the operation, for the message (``"get_job"``).
        url: the database URL; only its redacted form reaches the message.

    Raises:
        StorageError: the block raised a SQLAlchemy, sqlite3 or psycopg error.
    """
    try:
        yield
    except DRIVER_ERRORS as error:
        raise storage_error(what, url, error) from error


def retryable(error: BaseException, *, unique: bool) -> bool:
    """Whether a transaction that failed with ``error`` may run again (PostgreSQL only)."""
    cause = error.orig if isinstance(error, exc.DBAPIError) else error
    state = getattr(cause, "sqlstate", None)
    return state in _RETRYABLE or (unique and state == _UNIQUE_VIOLATION)


def is_memory(engine: Engine) -> bool:
    """Whether ``engine`` is a SQLite database in memory (one connection for everything)."""
    return engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:")


def create_engine(url: str, pool_size: int) -> Engine:
    """The engine for ``url``; a PostgreSQL one pools ``pool_size`` connections.

    Raises:
        UnknownScheme: ``url`` is not a SQLite or PostgreSQL URL, or its driver is missing.
    """
    try:
        parsed = sa.make_url(url)
    except exc.ArgumentError as error:
        raise UnknownScheme(f"not a database URL: {redact_url(url)!r}") from error
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    # statement parameters hold job specs, secrets included: keep them out of messages
    common: dict[str, Any] = {"hide_parameters": True}
    if backend == "sqlite" and driver == "pysqlite":
        if parsed.database in (None, "", ":memory:"):
            # one database per connection: every thread must share the one connection
            engine = sa.create_engine(
                parsed,
                poolclass=pool.StaticPool,
                connect_args={"check_same_thread": False},
                **common,
            )
            _sqlite_hooks(engine, wal=False)
            return engine
        engine = sa.create_engine(
            parsed,
            poolclass=pool.QueuePool,
            # the store's reader and writer (see _database), and a spare
            pool_size=3,
            max_overflow=0,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
            **common,
        )
        _sqlite_hooks(engine, wal=True)
        return engine
    if backend == "postgresql" and driver in ("psycopg", "psycopg2"):
        # psycopg2 is SQLAlchemy's default driver for "postgresql://": Hodei uses psycopg 3
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.drivername == "postgresql+psycopg":
            try:
                engine = sa.create_engine(
                    parsed,
                    pool_size=pool_size,
                    max_overflow=0,
                    # a connection that died meanwhile (a server restart) is replaced, rather
                    # than failing the operation that draws it
                    pool_pre_ping=True,
                    **common,
                )
            except ImportError as error:
                raise UnknownScheme(
                    "the PostgreSQL store needs psycopg: pip install 'hodei-pipelines[postgres]'"
                ) from error
            _postgresql_hooks(engine)
            return engine
    raise UnknownScheme(
        f"the SQL store does not support {redact_url(url)!r}: use sqlite:///PATH, sqlite:// "
        "(in memory), postgresql://… or postgresql+psycopg://…"
    )


def _sqlite_hooks(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop sqlite3 from issuing BEGIN (late, deferred) on its own: the store does.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            if wal:
                cursor.execute("PRAGMA journal_mode = WAL")
                # In WAL mode NORMAL loses no committed transaction when the process dies, only
                # (perhaps) the last ones on a power cut; FULL would fsync at every commit.
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    # For SQLAlchemy's own connections (the migrations); store operations BEGIN on the driver.
    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(WRITE, False):
            dbapi_connection = connection.connection.dbapi_connection
            assert dbapi_connection is not None, "a connection in use has a driver connection"
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
            finally:
                cursor.close()


def _postgresql_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # psycopg prepares a statement run five times, and PostgreSQL then keeps one generic
        # plan for it if that looks no dearer than the plans made for the values. A store
        # starts empty: a plan made while the jobs table holds a few rows scans it whole, and
        # goes on scanning it as it grows to thousands, until an ANALYZE comes round (a
        # minute or more later). Planning each execution for its values costs ~0.1 ms and
        # keeps the lookups by id on their index (benchmark: 492 -> 589 jobs/s).
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET plan_cache_mode = force_custom_plan")
        dbapi_connection.commit()
