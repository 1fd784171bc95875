"""``WaitingPolls``: the agents' long-polls waiting in this process, the safety net that wakes
those the bus failed to, and the keep-alive that counts a waiting poll as a heartbeat.

A waiting poll is woken through the bus when there is something for its worker (DESIGN §3),
but the bus may drop an event. Each poll used to read the store again every few seconds in
case it had: with 1,000 agents polling, that was ~400 store reads a second for nothing, a fifth
of the server's CPU. Instead, one task of the process asks the store every ``RECHECK_S`` which
workers have a job assigned and not yet started, or a job to stop, and wakes their polls,
which then read the store as if the bus had woken them. A dropped drain comes with the next
heartbeat answer, or the next poll.

A worker whose poll waits on an open connection is alive as far as the server can tell: an
agent that crashes or is killed closes its connections, and its poll ends. So, a few times per
``lost_after_s``, one store write notes every worker with a poll waiting here as heard from
(``keep_alive``), and such workers are asked for heartbeats far less often
(``Api.heartbeat_pace``, ``speak_for``): with 1,000 agents, heartbeats were most of the
server's requests. A worker told to drain stops polling, so it is asked for the usual pace.
The cost: a host that vanishes without closing its connections (power cut, network split) is
found lost once its poll's wait has run out too, up to ``lost_after_s`` later than a silent one.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator

import trio

from hodei_core import Hodei, JobState
from hodei_core.errors import HodeiError
from hodei_core.ports import JobQuery

__all__ = ["KEEP_ALIVES_PER_LOST", "RECHECK_S", "WaitingPolls"]

log = logging.getLogger("hodei.http")

#: How long a job assigned while its worker's poll missed the event waits, at most.
RECHECK_S = 5.0
#: How many times per ``lost_after_s`` the workers with a poll waiting are noted as alive.
KEEP_ALIVES_PER_LOST = 6
# Jobs assigned and not yet started are few (they start within milliseconds); a burst beyond
# this many is swept in the next rounds, or found by each worker's next poll.
_SWEEP_LIMIT = 10_000
# assigned jobs not yet started, and jobs to stop: what a dropped event may have hidden
_NEWS = frozenset({JobState.ASSIGNED, JobState.CANCELLING})


class WaitingPolls:
    """The long-polls waiting in this process, by worker id."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[trio.CancelScope]] = {}
        # when each worker's latest waiting poll began, and how long it may wait
        self._began: dict[str, tuple[float, float]] = {}

    def __len__(self) -> int:
        """How many workers have a poll waiting here."""
        return len(self._waiting)

    def __contains__(self, worker_id: object) -> bool:
        return worker_id in self._waiting

    def speak_for(self, worker_id: str, lost_after_s: float) -> bool:
        """Whether ``keep_alive`` keeps this worker alive for as long as it polls: a poll of
        it waits here, and its polls are shorter than ``lost_after_s`` (past that age a poll
        is no news, and a live agent making such polls needs its heartbeats)."""
        began = self._began.get(worker_id)
        return began is not None and began[1] < lost_after_s

    @contextlib.contextmanager
    def waiting(self, worker_id: str, scope: trio.CancelScope, wait_s: float) -> Iterator[None]:
        """While in this context, a poll of ``worker_id`` waits under ``scope``, for at most
        ``wait_s`` in all; ``wake`` cancels the scope, which the poll takes as "read the store
        again"."""
        scopes = self._waiting.setdefault(worker_id, set())
        scopes.add(scope)
        self._began[worker_id] = (trio.current_time(), wait_s)
        try:
            yield
        finally:
            scopes.discard(scope)
            if not scopes:
                del self._waiting[worker_id]
                del self._began[worker_id]

    def wake(self, worker_ids: Iterable[str]) -> None:
        """Wake the waiting polls of these workers (those waiting elsewhere are not ours)."""
        for worker_id in worker_ids:
            for scope in self._waiting.get(worker_id, ()):
                scope.cancel()

    async def sweep(
        self, hodei: Hodei, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Every ``RECHECK_S``, wake the polls of the workers that have a job assigned and not
        yet started, or one to stop, until cancelled."""
        task_status.started()
        while True:
            await trio.sleep(RECHECK_S)
            if not self._waiting:
                continue
            query = JobQuery(states=_NEWS, limit=_SWEEP_LIMIT)
            try:
                jobs = await hodei.store.list_jobs(query)
            except HodeiError as exc:  # the store is unavailable: polls end on their own
                log.warning("could not look for jobs the bus did not announce: %s", exc)
                continue
            self.wake({job.worker_id for job in jobs if job.worker_id is not None})

    async def keep_alive(
        self,
        hodei: Hodei,
        lost_after_s: float,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """A few times per ``lost_after_s``, note the workers with a poll waiting here as
        heard from (a poll waiting for longer than ``lost_after_s`` is no news), until
        cancelled."""
        task_status.started()
        while True:
            await trio.sleep(lost_after_s / KEEP_ALIVES_PER_LOST)
            recent = trio.current_time() - lost_after_s
            alive = [worker for worker, (began, _) in self._began.items() if began > recent]
            if not alive:
                continue
            try:
                await hodei.workers.touch(alive)
            except HodeiError as exc:  # the store is unavailable: heartbeats still count
                log.warning("could not note the polling workers as alive: %s", exc)
