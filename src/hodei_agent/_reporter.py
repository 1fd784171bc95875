"""The reporter: an agent's job reports (starts, output, ends) sent several to a request.

Whatever is asked while a request is in flight goes together in the next one. At low load a
report leaves at once, alone, and waits for nothing; under load the reports of many attempts
share a request. That matters because a request costs the server (and the agent) much more
than a report in it does: with four jobs starting and ending together, an agent sends two
requests instead of eight.

Each report still gets its own answer: the server applies each and says for each what its
own endpoint would have said, so that a stale attempt is refused alone. A server without the
batch endpoint (404 or 405), a batch too large for it (413), or one it finds malformed (400:
one report in it, say) makes the callers send their reports alone, each on its own endpoint
(``SendAlone``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import attrs
import trio

from hodei_core.errors import HodeiError

from ._answers import Refused, check_result, problem
from ._outbox import Key
from ._retry import Unavailable
from ._session import WORKER, Session
from ._wire import BadAnswer

__all__ = ["Reporter", "SendAlone"]

log = logging.getLogger("hodei.agent")

_PATH = f"/api/v1/workers/{WORKER}/reports"
#: how long reports go alone after a server said it has no batch endpoint
ALONE_FOR_S = 300.0


class SendAlone(Exception):
    """Send this report on its own endpoint instead: the server takes no batches, or not one
    this large."""


@attrs.define(eq=False)
class _Item:
    body: dict[str, Any]
    key: Key
    size: int
    done: trio.Event = attrs.Factory(trio.Event)
    error: Exception | None = None


class Reporter:
    """Sends reports in batches, one request at a time.

    Args:
        session: the agent's session (tokens, registering again).
        nursery: where the sending task runs.
        max_bytes: the most a batch carries, roughly (its reports' ``size``); a single report
            larger than that goes alone.
        max_reports: the most reports in one batch.
    """

    def __init__(
        self,
        session: Session,
        nursery: trio.Nursery,
        *,
        max_bytes: int = 256 * 1024,
        max_reports: int = 256,
    ) -> None:
        self._session = session
        self._nursery = nursery
        self._max_bytes = max_bytes
        self._max_reports = max_reports
        self._pending: list[_Item] = []
        self._sending = False
        # until when the server is taken to have no batch endpoint (it said 404 or 405)
        self._alone_until = -math.inf
        #: how many requests carried how many reports, for tests and benchmarks
        self.requests = 0
        self.reports = 0

    async def send(self, body: dict[str, Any], key: Key, size: int) -> None:
        """Deliver one report of the attempt ``key`` (``body`` as the batch endpoint takes it,
        ``size`` roughly its bytes); returns once the server applied it.

        Raises:
            SendAlone: send it on its own endpoint instead.
            Unavailable: the server could not be reached, or said "later": try again.
            StaleAttempt, JobAlreadyFinished, JobNotFound: the attempt is not this worker's.
            Refused: the server refused the report (or the batch) itself.
        """
        if trio.current_time() < self._alone_until or size > self._max_bytes:
            raise SendAlone()
        if not self._sending:
            # raises RuntimeError once the control plane is closed, as its HTTP client does
            self._nursery.start_soon(self._run)
            self._sending = True
        item = _Item(body, key, size)
        self._pending.append(item)
        await item.done.wait()
        if item.error is not None:
            raise item.error

    async def _run(self) -> None:
        try:
            while self._pending:
                await self._deliver(self._take())
        finally:
            self._sending = False
            # cancelled (the agent is closing): nobody must wait for an answer forever
            for item in self._pending:
                item.error = Unavailable("the agent is closing")
                item.done.set()
            self._pending.clear()

    def _take(self) -> list[_Item]:
        size, count = 0, 0
        for item in self._pending:
            if count == self._max_reports or (count and size + item.size > self._max_bytes):
                break
            size += item.size
            count += 1
        batch, self._pending = self._pending[:count], self._pending[count:]
        return batch

    async def _deliver(self, batch: list[_Item]) -> None:
        self.requests += 1
        self.reports += len(batch)
        answered = False
        try:
            try:
                response = await self._session.worker_call(
                    _PATH, {"reports": [item.body for item in batch]}
                )
            except Unavailable as exc:
                for item in batch:
                    item.error = Unavailable(str(exc), exc.retry_after_s)
                return
            except HodeiError as exc:  # registering again was refused
                for item in batch:
                    item.error = Refused(str(exc))
                return
            if response.status_code in (404, 405):
                log.info("the server takes no batches of reports: sending them one by one for now")
                # asked again now and then: the answer may have come from an old server
                # behind a load balancer, or a proxy, rather than the one the agent will see
                self._alone_until = trio.current_time() + ALONE_FOR_S
            # 413: too large together; 400 for several: one of them is malformed, and alone
            # each is refused or taken on its own merits, as before batches
            if response.status_code in (404, 405, 413) or (
                response.status_code == 400 and len(batch) > 1
            ):
                for item in batch:
                    item.error = SendAlone()
                return
            if response.status_code >= 300:
                refusal = problem(response, "reports")
                for item in batch:
                    item.error = Refused(refusal)
                return
            try:
                answer = response.json()
            except ValueError:
                answer = None
            self._settle(batch, answer)
            answered = True
        finally:
            for item in batch:
                if not answered and item.error is None:
                    # cancelled in flight (the agent is closing): it may not have arrived
                    item.error = Unavailable("the agent is closing")
                item.done.set()

    def _settle(self, batch: list[_Item], answer: object) -> None:
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(batch):
            for item in batch:
                item.error = BadAnswer("the server's answer to a batch of reports is malformed")
            return
        for item, result in zip(batch, results, strict=True):
            status = result.get("status") if isinstance(result, dict) else None
            if not isinstance(status, int):
                item.error = BadAnswer("a result in a batch of reports has no status")
            elif status >= 300:
                item.error = check_result(status, result, f"{item.body['type']} report", item.key)
