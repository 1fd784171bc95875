"""The agent's session with the server: its tokens and its registration, and each request with
what a failed one means. No answer, or one that says "later" (5xx, 429), is ``Unavailable``.
When the server no longer knows the worker's token (401: say it restarted with a new key) or
the worker itself (404: an empty store), the agent registers again under the same name,
telling the server which attempts it still runs so that they stay its own, and the call is
tried once more.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import trio

from hodei_core import Worker, WorkerRegistration

from ._answers import Refused, check, problem, unavailable
from ._outbox import Key
from ._retry import Backoff, Link, retrying
from ._wire import Registered, registered_from, registration_json

__all__ = ["WORKER", "Session"]

log = logging.getLogger("hodei.agent")

#: Stands for the worker's id in a path: the id may change when the agent registers again.
WORKER = "{worker}"
# a long-poll's answer may come a little after its wait: read that much longer before giving up
_POLL_GRACE_S = 10.0


class Session:
    """Requests to the server as this agent, registering (again) as needed.

    Args:
        client: the HTTP client, its base URL the server's.
        agent_token: the agent registration token.
        link: the shared view of whether the server answers.
        backoff: makes the retry schedule of a registration.
        held: the attempts the agent runs or still has reports about, to keep on registering.
        timeouts: ``(connect, read)`` seconds (a long-poll reads for longer).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        agent_token: str,
        *,
        link: Link,
        backoff: Callable[[], Backoff],
        held: Callable[[], set[Key]],
        timeouts: tuple[float, float],
    ) -> None:
        self._client = client
        self._agent_token = agent_token
        self._link = link
        self._backoff = backoff
        self._held = held
        self._timeouts = timeouts
        self._lock = trio.Lock()
        self._generation = 0  # how many times this agent registered
        self._registration: WorkerRegistration | None = None
        #: the last registration's answer: the worker, its token, the pace the server asks for
        self.registered: Registered | None = None
        #: called with each registration's answer
        self.on_registered: Callable[[Registered], None] | None = None

    @property
    def worker(self) -> Worker:
        """The worker, as last registered."""
        if self.registered is None:
            raise RuntimeError("the agent has not registered yet")
        return self.registered.worker

    async def request(
        self,
        path: str,
        body: Any,
        *,
        as_worker: bool = True,
        params: dict[str, Any] | None = None,
        long_poll_s: float | None = None,
    ) -> httpx.Response:
        """One POST, with the worker's token (or the agent token); a long-poll of
        ``long_poll_s`` gets that much longer to answer. ``WORKER`` in ``path`` stands for the
        worker's id.

        Raises:
            Unavailable: no answer, or one that says "later" (5xx, 429).
        """
        if WORKER in path:
            path = path.replace(WORKER, quote(self.worker.id, safe=""))
        token = self._agent_token
        if as_worker:
            assert self.registered is not None
            token = self.registered.token
        connect, read = self._timeouts
        if long_poll_s is not None:
            read = long_poll_s + _POLL_GRACE_S
        try:
            response = await self._client.post(
                path,
                json=body,
                params=params,
                headers={"Authorization": f"Bearer {token}"},
                timeout=httpx.Timeout(read, connect=connect),
            )
        except httpx.TransportError as exc:
            raise unavailable(exc, None) from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise unavailable(None, response)
        return response

    async def worker_call(
        self,
        path: str,
        body: Any,
        *,
        again_on: tuple[int, ...] = (401,),
        params: dict[str, Any] | None = None,
        long_poll_s: float | None = None,
    ) -> httpx.Response:
        """``request`` with the worker's token; on a status in ``again_on`` (the server forgot
        the token, or the worker), register again and try once more.

        Raises:
            Unavailable: no answer, or one that says "later" (5xx, 429).
            Refused: the server refused the agent token when registering again.
        """
        generation = self._generation
        response = await self.request(path, body, params=params, long_poll_s=long_poll_s)
        if response.status_code in again_on:
            async with self._lock:
                if self._generation == generation:  # nobody else did it meanwhile
                    log.warning("registering again (%s)", problem(response, path))
                    await self._register()
            response = await self.request(path, body, params=params, long_poll_s=long_poll_s)
        return response

    async def register(self, registration: WorkerRegistration) -> Worker:
        """Create or update the worker record for this name; waits for the server if it
        cannot be reached.

        Raises:
            Refused: the server refused the agent token or the registration.
        """
        self._registration = registration
        async with self._lock:
            await self._register()
        return self.worker

    async def _register(self) -> None:
        registration = self._registration
        assert registration is not None

        async def once() -> Registered:
            body = registration_json(registration, self._held())
            response = await self.request("/api/v1/workers", body, as_worker=False)
            if response.status_code in (401, 403):
                raise Refused(problem(response, "the server refused the agent token"))
            return registered_from(check(response, "registration"))

        registered = await retrying(once, self._backoff(), self._link, "register")
        self.registered = registered
        self._generation += 1
        worker = registered.worker
        log.info("registered as %s (%s) with %s", worker.name, worker.id, self._client.base_url)
        if self.on_registered is not None:
            self.on_registered(registered)
