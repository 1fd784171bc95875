"""Alembic's entry point for the SQL store's migrations.

The store runs them itself when it opens (``hodei_backends.sql.upgrade`` does it for a command),
passing its open connection in ``config.attributes["connection"]``: the migrations then run in
that connection's transaction, which also works for a database in memory. Run from the
``alembic`` command instead, this script connects to ``sqlalchemy.url`` from the configuration.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from hodei_backends.sql._schema import metadata

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    # SQL scripts for a DBA: alembic upgrade head --sql
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    shared = config.attributes.get("connection")
    if shared is not None:
        _run(shared)
    else:
        engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "")
        try:
            with engine.connect() as connection:
                _run(connection)
                connection.commit()
        finally:
            engine.dispose()
