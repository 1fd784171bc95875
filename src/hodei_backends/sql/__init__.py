"""The SQL store: the ``Store`` port on SQLite (a file, or in memory) and PostgreSQL.

``open_sql_store(url)`` opens one (and brings its schema up to date with the Alembic migrations
shipped here); ``upgrade(url)`` only migrates. Needs the ``sql`` extra (SQLAlchemy, Alembic),
and for PostgreSQL the ``postgres`` extra (psycopg 3).
"""

from ._migrate import upgrade
from ._store import SqlStore, open_sql_store

__all__ = ["SqlStore", "open_sql_store", "upgrade"]
