"""``WaitingPolls``: the agents' long-polls waiting in this process, and the safety net that
wakes those the bus failed to.

A waiting poll is woken through the bus when there is something for its worker (DESIGN §3),
but the bus may drop an event. Each poll used to read the store again every few seconds in
case it had: with 1,000 agents polling, that was ~400 store reads a second for nothing, a fifth
of the server's CPU. Instead, one task of the process asks the store every ``RECHECK_S`` which
workers have a job assigned and not yet started, and wakes their polls, which then read the
store as if the bus had woken them. A dropped cancel or drain needs no such net: every
heartbeat answer carries them (``hodei_core`` agents obey it), at least as often.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator

import trio

from hodei_core import Hodei, JobState
from hodei_core.errors import HodeiError
from hodei_core.ports import JobQuery

__all__ = ["RECHECK_S", "WaitingPolls"]

log = logging.getLogger("hodei.http")

#: How long a job assigned while its worker's poll missed the event waits, at most.
RECHECK_S = 5.0
# Jobs assigned and not yet started are few (they start within milliseconds); a burst beyond
# this many is swept in the next rounds, or found by each worker's next poll.
_SWEEP_LIMIT = 10_000
_ASSIGNED = frozenset({JobState.ASSIGNED})


class WaitingPolls:
    """The long-polls waiting in this process, by worker id."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[trio.CancelScope]] = {}

    @contextlib.contextmanager
    def waiting(self, worker_id: str, scope: trio.CancelScope) -> Iterator[None]:
        """While in this context, a poll of ``worker_id`` waits under ``scope``; ``wake``
        cancels the scope, which the poll takes as "read the store again"."""
        scopes = self._waiting.setdefault(worker_id, set())
        scopes.add(scope)
        try:
            yield
        finally:
            scopes.discard(scope)
            if not scopes:
                del self._waiting[worker_id]

    def wake(self, worker_ids: Iterable[str]) -> None:
        """Wake the waiting polls of these workers (those waiting elsewhere are not ours)."""
        for worker_id in worker_ids:
            for scope in self._waiting.get(worker_id, ()):
                scope.cancel()

    async def sweep(
        self, hodei: Hodei, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Every ``RECHECK_S``, wake the polls of the workers that have a job assigned and not
        yet started, until cancelled."""
        task_status.started()
        while True:
            await trio.sleep(RECHECK_S)
            if not self._waiting:
                continue
            query = JobQuery(states=_ASSIGNED, limit=_SWEEP_LIMIT)
            try:
                jobs = await hodei.store.list_jobs(query)
            except HodeiError as exc:  # the store is unavailable: polls end on their own
                log.warning("could not look for jobs the bus did not announce: %s", exc)
                continue
            self.wake({job.worker_id for job in jobs if job.worker_id is not None})
