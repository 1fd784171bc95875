"""The outbox: the log chunks and final results of job attempts on their way to the server.

While the server answers, a report is sent at once and its caller waits for the answer, so
that a job writing faster than the server takes its output is slowed down, and a refusal (the
attempt is stale) reaches the worker loop, which then stops the job. While the server is
unavailable, reports are kept and their callers go on: jobs keep running and finishing, and
what they said is delivered, in order, when the server is back.

Each attempt has its own lane, sent one report at a time in the order they were made (its logs
before its final result); lanes of different attempts go side by side. What is kept is bounded:
past ``max_bytes`` the oldest log reports give way to a one-line note in the job's log. A
final result is never dropped. Resending is safe, since the server ignores a chunk whose
``seq`` it has and a second finish of the same attempt.
"""

from __future__ import annotations

import collections
import itertools
import logging
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from hodei_core import LogChunk, Outcome, Stream
from hodei_core.errors import HodeiError, JobAlreadyFinished, JobNotFound, StaleAttempt

from ._retry import Backoff, Link, Unavailable

__all__ = ["Key", "Outbox", "Send", "report_size"]

log = logging.getLogger("hodei.agent")

#: An attempt: ``(job_id, attempt)``.
Key = tuple[str, int]
#: Delivers one report (logs, or the final result when the outcome is given). Raises
#: ``Unavailable`` to be tried again later, a "gone" error when the attempt is not the
#: worker's any more, any other ``HodeiError`` when the server refuses the report itself.
Send = Callable[[Key, Sequence[LogChunk], Outcome | None], Awaitable[None]]

_GONE = (StaleAttempt, JobAlreadyFinished, JobNotFound)
_CHUNK_OVERHEAD = 64  # what a chunk costs besides its text: a guess, good enough for a bound
_REPORT_OVERHEAD = 128  # a report's job id, attempt, outcome…: a guess, as above
_GONE_REMEMBERED = 1024


def _size(chunks: Sequence[LogChunk]) -> int:
    return sum(len(c.data) + _CHUNK_OVERHEAD for c in chunks)


def report_size(chunks: Sequence[LogChunk]) -> int:
    """Roughly how many bytes a report with ``chunks`` takes in a request."""
    return _REPORT_OVERHEAD + _size(chunks)


@attrs.define(eq=False)
class _Report:
    chunks: list[LogChunk]
    outcome: Outcome | None  # None: output; else the attempt's final result
    order: int
    size: int
    settled: trio.Event = attrs.Factory(trio.Event)
    error: HodeiError | None = None
    cut: bool = False  # its output was replaced by a note, to make room


@attrs.define(eq=False)
class _Lane:
    key: Key
    backoff: Backoff
    reports: collections.deque[_Report] = attrs.Factory(collections.deque)
    parked: bool = False  # the server is unavailable: callers no longer wait for delivery
    sending: _Report | None = None


class Outbox:
    """Sends reports of job attempts, keeping them while the server is unavailable.

    Args:
        send: delivers one report.
        nursery: where the lanes' senders run.
        link: the shared view of whether the server answers.
        max_bytes: how much output to keep, at most, while the server is unavailable.
        backoff: makes the retry schedule of a lane.
    """

    def __init__(
        self,
        send: Send,
        nursery: trio.Nursery,
        link: Link,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self._send = send
        self._nursery = nursery
        self._link = link
        self._max_bytes = max_bytes
        self._backoff = backoff
        self._lanes: dict[Key, _Lane] = {}
        self._gone: collections.OrderedDict[Key, HodeiError] = collections.OrderedDict()
        self._order = itertools.count()
        self._empty = trio.Event()
        self._empty.set()
        self._cut_chars = 0
        #: how many bytes of reports (roughly) are held now
        self.size = 0

    def attempts(self) -> set[Key]:
        """The attempts with reports not yet delivered (a final result, maybe)."""
        return set(self._lanes)

    async def wait_empty(self) -> None:
        """Return once every report has been delivered (or refused)."""
        await self._empty.wait()

    async def put(
        self, key: Key, chunks: Sequence[LogChunk], outcome: Outcome | None = None
    ) -> None:
        """Send a report about the attempt ``key``: output, or with ``outcome`` its final
        result. Waits for the server's answer while the server is available.

        Raises:
            StaleAttempt, JobAlreadyFinished, JobNotFound: the server refused this report, or
                an earlier one of the attempt, because the attempt is no longer the worker's.
        """
        # after the final result nothing more comes about the attempt: forget it then
        gone = self._gone.pop(key, None) if outcome is not None else self._gone.get(key)
        if gone is not None:
            raise gone
        if not chunks and outcome is None:
            return
        report = _Report(list(chunks), outcome, next(self._order), _size(chunks))
        lane = self._lanes.get(key)
        if lane is None:
            # while the server is known to be down, a new lane does not wait a failed try
            lane = self._lanes[key] = _Lane(key, self._backoff(), parked=not self._link.up)
            self._nursery.start_soon(self._run, lane)
        lane.reports.append(report)
        self.size += report.size
        if self._empty.is_set():
            self._empty = trio.Event()
        self._make_room()
        if not lane.parked:
            await report.settled.wait()
        if report.error is not None:
            raise report.error

    async def _run(self, lane: _Lane) -> None:
        job_id, attempt = lane.key
        while lane.reports:
            report = lane.reports[0]
            lane.sending = report
            try:
                await self._send(lane.key, report.chunks, report.outcome)
            except Unavailable as exc:
                lane.sending = None
                self._link.failed(f"reports of job {job_id}", exc)
                self._park(lane)
                await self._link.sleep(lane.backoff.next_delay(exc.retry_after_s))
                continue
            except _GONE as exc:
                log.info("job %s attempt %s: reports dropped: %s", job_id, attempt, exc)
                self._drop(lane, exc)
                return
            except HodeiError as exc:
                # retrying cannot help a report the server finds malformed: a bug, logged
                log.error("job %s attempt %s: report refused: %s", job_id, attempt, exc)
            else:
                self._link.answered()
                lane.backoff.reset()
                lane.parked = False
            lane.sending = None
            lane.reports.popleft()
            self.size -= report.size
            report.settled.set()
        self._close(lane)

    def _park(self, lane: _Lane) -> None:
        if not lane.parked:
            lane.parked = True
            for report in lane.reports:
                report.settled.set()  # its caller goes on; the report stays here

    def _drop(self, lane: _Lane, error: HodeiError) -> None:
        for report in lane.reports:
            self.size -= report.size
            report.error = error
            report.settled.set()
        if not any(r.outcome is not None for r in lane.reports):
            # no caller may be waiting: say it on the attempt's next report
            self._gone[lane.key] = error
            if len(self._gone) > _GONE_REMEMBERED:
                self._gone.popitem(last=False)
        lane.reports.clear()
        self._close(lane)

    def _close(self, lane: _Lane) -> None:
        del self._lanes[lane.key]
        if not self._lanes:
            self._empty.set()
            if self._cut_chars:
                log.warning(
                    "delivered what was kept; %d characters of output were dropped",
                    self._cut_chars,
                )
                self._cut_chars = 0

    def _make_room(self) -> None:
        if self.size <= self._max_bytes:
            return
        oldest_first = sorted(
            (
                (report, lane)
                for lane in self._lanes.values()
                for report in lane.reports
                if report.outcome is None and not report.cut and report is not lane.sending
            ),
            key=lambda pair: pair[0].order,
        )
        for report, lane in oldest_first:
            if self.size <= self._max_bytes:
                break
            self._cut(report, lane)

    def _cut(self, report: _Report, lane: _Lane) -> None:
        chars = sum(len(c.data) for c in report.chunks)
        if not self._cut_chars:
            log.warning(
                "the server is unavailable and the outbox is full (%d bytes): dropping the "
                "oldest output, first of job %s attempt %s",
                self._max_bytes,
                *lane.key,
            )
        self._cut_chars += chars
        first = report.chunks[0]
        note = (
            f"hodei: {chars} characters of output dropped here: the server was unavailable "
            "and the agent could keep no more\n"
        )
        # the note takes the first chunk's seq, so that the log says where output is missing
        replacement = [LogChunk(first.seq, Stream.STDERR, note, first.ts)]
        self.size -= report.size
        if _size(replacement) < report.size:
            report.chunks, report.size, report.cut = replacement, _size(replacement), True
            self.size += report.size
        else:
            lane.reports.remove(report)  # smaller than its note
        report.settled.set()
