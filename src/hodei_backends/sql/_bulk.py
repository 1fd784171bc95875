"""Statements that write many rows in one execution.

A batch writes the rows of many operations at once: a dozen new jobs, their state changes,
their log chunks. Run row by row, each row costs a statement: on PostgreSQL a statement the
server parses, plans and runs; on SQLite a step for which Python's sqlite3 module lets go of
the GIL, and taking it back while the trio thread runs Python costs many times the row. So
the store's inserts and updates of many rows run as one statement (PostgreSQL: arrays, one per
column, ``unnest``-ed) or a few (SQLite: ``VALUES`` lists of 2**k rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

__all__ = ["Bulk", "Unnest", "Values"]


class Bulk(Protocol):
    """A statement's way of writing many rows at once."""

    def run(self, cursor: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write ``rows`` (two or more), each a mapping of every parameter of one row."""


class Values:
    """SQLite: ``… VALUES (…), (…), …`` in pieces of 2**k rows, each text made once.

    Args:
        make: the SQL text for ``n`` rows, with ``names`` in each row's placeholders (qmark).
        names: the parameters of one row, in placeholder order.
    """

    __slots__ = ("_make", "_texts", "largest", "names")

    def __init__(self, make: Callable[[int], str], names: Sequence[str]) -> None:
        self._make = make
        self._texts: dict[int, str] = {}
        self.names = tuple(names)
        # the most placeholders an old SQLite takes in one statement is 999
        self.largest = 1 << min(6, (999 // len(self.names)).bit_length() - 1)

    def text(self, rows: int) -> str:
        """The text for ``rows`` rows."""
        text = self._texts.get(rows)
        if text is None:
            text = self._texts[rows] = self._make(rows)
        return text

    def sizes(self, rows: int) -> Iterator[int]:
        """Pieces of ``rows`` rows, powers of two, largest first."""
        while rows >= self.largest:
            yield self.largest
            rows -= self.largest
        size = self.largest
        while rows:
            size >>= 1
            if rows & size:
                yield size
                rows -= size

    def run(self, cursor: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        names = self.names
        done = 0
        for size in self.sizes(len(rows)):
            piece = rows[done : done + size]
            done += size
            cursor.execute(self.text(size), [row[name] for row in piece for name in names])


class Unnest:
    """PostgreSQL: one statement whose parameters are arrays, a column each, of all the rows.

    Args:
        text: the SQL text, with a ``%(name)s`` array parameter per name of ``names``.
        names: the parameters of one row.
    """

    __slots__ = ("names", "text")

    def __init__(self, text: str, names: Sequence[str]) -> None:
        self.text = text
        self.names = tuple(names)

    def run(self, cursor: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        cursor.execute(self.text, {name: [row[name] for row in rows] for name in self.names})
