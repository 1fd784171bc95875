"""Schema migrations: Alembic, driven from code, with the scripts shipped in this package."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from hodei_core.errors import StorageError

from ._database import Database
from ._engine import translate_errors

__all__ = ["migrate", "upgrade"]

# A package resource, so that it works wherever the package is installed.
SCRIPT_LOCATION = "hodei_backends.sql:migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the store's migrations; with ``connection``, they run on
    it, in its transaction."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def migrate(db: Database) -> None:
    """Bring ``db`` to the latest schema, in one write transaction, in this thread.

    Several processes opening one new database at once take turns: SQLite's ``BEGIN
    IMMEDIATE``, an advisory lock on PostgreSQL. The later ones find the schema up to date.

    Raises:
        StorageError: the database failed, or its schema is of a revision this code does not
            know (written by a newer Hodei).
    """
    lock = db.statements.migration_lock
    with (
        translate_errors("migrate", db.url),
        db.write_engine.connect() as connection,
        connection.begin(),
    ):
        if lock is not None:
            connection.exec_driver_sql(lock.text)
        try:
            command.upgrade(alembic_config(connection), "head")
        except CommandError as error:
            raise StorageError(
                f"cannot migrate the database at {db.redacted_url}: {error} "
                "(was it written by a newer version of Hodei?)"
            ) from error


def upgrade(url: str) -> None:
    """Bring the database at ``url`` to the latest schema (what ``hodei db upgrade`` runs).

    Opening a store does the same; this is for doing it ahead, e.g. before a deployment.

    Raises:
        StorageError: the database failed or is of an unknown revision.
        UnknownScheme: ``url`` is not a SQLite or PostgreSQL URL, or its driver is missing.
    """
    db = Database(url, pool_size=1)
    try:
        migrate(db)
    finally:
        db.dispose()
