"""A Server-Sent Events parser: just what the ``text/event-stream`` format needs.

Lines come in already split (httpx splits on ``\\n``, ``\\r\\n`` and ``\\r``); fields are
``event:``, ``id:`` and ``data:`` (several ``data:`` lines join with ``\\n``), a line that starts
with ``:`` is a comment (the server's keep-alives), and a blank line ends an event.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import attrs

__all__ = ["SseEvent", "SseParser", "iter_events"]


@attrs.frozen
class SseEvent:
    """One event of a stream.

    Attributes:
        event: its type (``message`` when the stream gave none).
        data: its data lines, joined with ``\\n``.
        id: the last event id seen so far in the stream (as the SSE rules have it: an event
            without an ``id:`` line keeps the previous one), None if there was none.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None

    def json(self) -> Any:
        """The data parsed as JSON.

        Raises:
            ValueError: the data is not JSON.
        """
        return json.loads(self.data)


class SseParser:
    """Turns lines into events: ``feed`` each line, get an event back at each blank line."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._last_id: str | None = None

    @property
    def last_id(self) -> str | None:
        """The last event id seen, for ``Last-Event-ID`` when reconnecting."""
        return self._last_id

    def feed(self, line: str) -> SseEvent | None:
        """Take one line (without its line break); returns the event it completes, if any."""
        if not line:
            if not self._data:  # a blank line after no data dispatches nothing
                self._event = ""
                return None
            event = SseEvent(self._event or "message", "\n".join(self._data), self._last_id)
            self._event = ""
            self._data = []
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")  # one space after the colon is part of the syntax
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self._last_id = value
        # `retry:` and unknown fields are ignored, as the format says
        return None


async def iter_events(lines: AsyncIterable[str]) -> AsyncIterator[SseEvent]:
    """The events in a stream of lines; an event cut off by the stream's end is dropped."""
    parser = SseParser()
    async for line in lines:
        event = parser.feed(line)
        if event is not None:
            yield event
