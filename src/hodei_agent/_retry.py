"""Trying again: capped exponential backoff with full jitter, and the one error that means
"the server cannot be reached now, try later".

Full jitter (a delay drawn uniformly between 0 and the capped exponential) keeps a fleet of
agents that lost the server at the same moment from coming back at the same moment.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
import trio

__all__ = ["Backoff", "Link", "Unavailable", "retrying"]

T = TypeVar("T")

log = logging.getLogger("hodei.agent")


class Unavailable(Exception):
    """The server could not be reached, or said it cannot serve now (5xx, 429).

    Args:
        message: what happened, for the log.
        retry_after_s: how long the server asked us to wait (``Retry-After``), if it did.
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@attrs.define
class Backoff:
    """The delays between tries of one operation: the ``n``-th is drawn from
    ``[0, min(cap_s, base_s * 2**n)]``.

    Args:
        base_s: the upper bound of the first delay.
        cap_s: no delay is longer.
        random: a number in ``[0, 1)``; tests pass a fixed one.
    """

    base_s: float = 0.2
    cap_s: float = 10.0
    random: Callable[[], float] = random.random
    failures: int = 0

    def next_delay(self, retry_after_s: float | None = None) -> float:
        """The delay before the next try (at least ``retry_after_s``, never over the cap)."""
        # past 60 doublings any base is over any sane cap; 2.0**n would overflow at ~1024
        exponent = min(self.failures, 60)
        ceiling = min(self.cap_s, self.base_s * 2.0**exponent)
        self.failures += 1
        delay = ceiling * self.random()
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return min(delay, self.cap_s)

    def reset(self) -> None:
        """The operation succeeded: the next failure starts from ``base_s`` again."""
        self.failures = 0


class Link:
    """Whether the server answers, shared by everything that talks to it: so that an outage is
    logged once when it starts and once when it ends, however many calls retry meanwhile,
    and so that every call waiting to retry goes as soon as one of them got through."""

    def __init__(self) -> None:
        self.up = True
        self._back = trio.Event()

    def failed(self, what: str, exc: Unavailable) -> None:
        """A call found the server unavailable."""
        if self.up:
            self.up = False
            self._back = trio.Event()
            log.warning("server unavailable (%s: %s); retrying with backoff", what, exc)
        else:
            log.debug("server still unavailable (%s: %s)", what, exc)

    def answered(self) -> None:
        """A call reached the server."""
        if not self.up:
            self.up = True
            self._back.set()
            log.warning("server reachable again")

    async def sleep(self, delay_s: float) -> None:
        """Wait ``delay_s`` before a retry, or less if the server is found back meanwhile.

        Only a return seen during the wait cuts it short: if some call got through since
        this one failed (the server answers, just not this call), the wait is whole, so
        that a call the server keeps refusing does not spin.
        """
        if self.up:
            await trio.sleep(delay_s)
            return
        with trio.move_on_after(delay_s):
            await self._back.wait()


async def retrying(
    call: Callable[[], Awaitable[T]],
    backoff: Backoff,
    link: Link,
    what: str,
    *,
    deadline: float = math.inf,
) -> T:
    """``await call()`` until it does not raise ``Unavailable``, sleeping ``backoff`` between
    tries.

    Raises:
        Unavailable: the last failure, at ``deadline`` (``trio.current_time()``) when the
            next try would start after it.
    """
    while True:
        try:
            result = await call()
        except Unavailable as exc:
            link.failed(what, exc)
            delay = backoff.next_delay(exc.retry_after_s)
            if trio.current_time() + delay >= deadline:
                # give up at the deadline, not before: a caller that polls in a loop would
                # otherwise spin through its short first delays again and again
                await link.sleep(max(0.0, deadline - trio.current_time()))
                if trio.current_time() >= deadline:
                    raise
                continue  # the server is back before the deadline: try again
            await link.sleep(delay)
            continue
        link.answered()
        backoff.reset()
        return result
