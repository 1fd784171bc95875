"""Statements compiled once per database, and the cursor that runs them.

The statements are SQLAlchemy Core constructs (``_statements``), compiled for the database's
dialect when the store opens. Each call then hands the SQL text and its parameters straight to
the driver's cursor: SQLAlchemy's per-execution work (cache lookup, events, result objects) cost
several times what SQLite itself takes for the small statements a store runs, and the store
reads rows by position, so it needs none of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler

from ._bulk import Bulk

__all__ = ["Sql", "Tx"]

_NO_PARAMS: Mapping[str, Any] = {}


class Sql:
    """One statement compiled for one dialect, with its parameters in the driver's style.

    Literal values of the construct (``state = 'queued'``, ``IN ('assigned', …)``) are bound
    parameters too; they are kept as defaults and merged with the ones given at each run.
    """

    __slots__ = ("bulk", "defaults", "names", "text")

    def __init__(self, statement: sa.ClauseElement, dialect: sa.Dialect) -> None:
        #: The same statement for many rows at once, if it has one (see ``_bulk``).
        self.bulk: Bulk | None = None
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler), "a statement compiles with a SQL compiler"
        # an "expanding" IN list would need rendering at each execution (see _statements)
        assert "POSTCOMPILE" not in compiled.string, f"expanding parameter in {compiled.string}"
        self.text: str = compiled.string
        #: The parameter names in placeholder order (qmark, SQLite), or None (named, psycopg).
        self.names: tuple[str, ...] | None = (
            tuple(compiled.positiontup or ()) if compiled.positional else None
        )
        params = compiled.construct_params(_check=False) or {}
        self.defaults: dict[str, Any] = {k: v for k, v in params.items() if v is not None}

    def bind(self, params: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        """The parameters to hand the driver, from the named ``params``."""
        values = {**self.defaults, **params} if self.defaults else params
        if self.names is None:
            return values
        return tuple([values[name] for name in self.names])

    def __repr__(self) -> str:
        return f"<Sql {' '.join(self.text.split())[:80]!r}>"


class Tx:
    """A transaction's cursor, running compiled statements. Rows are plain tuples."""

    __slots__ = ("cursor", "wrote")

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor
        #: Set by ``run`` and ``run_many`` (a batch needs to know whether an operation wrote).
        self.wrote = False

    def rows(self, sql: Sql, params: Mapping[str, Any] = _NO_PARAMS) -> list[Any]:
        """Every row ``sql`` selects."""
        self.cursor.execute(sql.text, sql.bind(params))
        rows: list[Any] = self.cursor.fetchall()
        return rows

    def first(self, sql: Sql, params: Mapping[str, Any] = _NO_PARAMS) -> Any:
        """The first row ``sql`` selects, or None."""
        self.cursor.execute(sql.text, sql.bind(params))
        return self.cursor.fetchone()

    def run(self, sql: Sql, params: Mapping[str, Any] = _NO_PARAMS) -> int:
        """Run ``sql``; returns how many rows it changed."""
        self.wrote = True
        self.cursor.execute(sql.text, sql.bind(params))
        count: int = self.cursor.rowcount
        return count

    def run_many(self, sql: Sql, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run ``sql`` once per item of ``rows``: in one driver call, or as statements of many
        rows each (``sql.bulk``)."""
        if not rows:
            return
        self.wrote = True
        bulk = sql.bulk
        if bulk is None or len(rows) == 1:
            self.cursor.executemany(sql.text, [sql.bind(row) for row in rows])
        else:
            bulk.run(self.cursor, rows)
