"""Subscriptions across the two threads: made and confirmed with the server in the loop thread,
their messages decoded there and delivered into trio memory channels in the trio thread.

A full channel drops the message (at-most-once delivery) and counts it in ``dropped``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import nats.errors
import trio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from ._loop_thread import _LoopThread

__all__ = ["_Subscription", "_Subscriptions"]

logger = logging.getLogger("hodei.nats")

T = TypeVar("T")

#: How long the server gets to confirm a subscription.
_CONFIRM_TIMEOUT_S = 2


class _Subscription(Generic[T]):
    """One subscription: decoded in the loop thread, delivered to ``send`` in the trio thread.

    ``nats_sub`` is touched only by the loop thread; ``ready`` and ``error`` only by trio.
    """

    def __init__(
        self, subject: str, send: trio.MemorySendChannel[T], decode: Callable[[bytes], T]
    ) -> None:
        self.subject = subject
        self.send = send
        self.decode = decode
        self.nats_sub: Subscription | None = None
        self.ready = trio.Event()
        self.error: BaseException | None = None

    def settle(self, error: BaseException | None) -> None:
        self.error = error
        self.ready.set()


class _Subscriptions:
    """What one connection does for its subscriptions, in the loop thread and in trio.

    Args:
        thread: the loop thread the connection runs on, which calls back into trio.
    """

    def __init__(self, thread: _LoopThread) -> None:
        self._thread = thread
        #: Confirmations under way (loop thread); closing cancels them.
        self.confirming: set[asyncio.Task[None]] = set()
        #: Messages a full subscription channel missed (trio thread).
        self.dropped = 0

    # -- trio ---------------------------------------------------------------------------------

    def deliver(self, sub: _Subscription[T], item: T) -> None:
        """Put ``item`` in the subscription's channel, or drop it (counted) when it is full."""
        try:
            sub.send.send_nowait(item)
        except trio.WouldBlock:
            self.dropped += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass  # the subscriber left; its unsubscribe is on its way

    # -- the loop thread ----------------------------------------------------------------------

    async def subscribe(self, nc: Client, sub: _Subscription[Any]) -> None:
        """Send the SUB, then have the server confirm it aside; ``sub`` settles either way."""

        async def on_message(msg: Msg) -> None:
            try:
                item = sub.decode(msg.data)
            except ValueError:
                logger.warning("dropping a message on %s", msg.subject, exc_info=True)
                return
            self._thread.to_trio(self.deliver, sub, item)

        try:
            sub.nats_sub = await nc.subscribe(sub.subject, cb=on_message)
        except (OSError, nats.errors.Error) as e:
            self._thread.to_trio(sub.settle, e)
            return
        except asyncio.CancelledError:  # the bus is closing; trio must not wait for it
            self._thread.to_trio(sub.settle, nats.errors.ConnectionClosedError())
            raise
        # Confirmed aside, so that commands queued behind this one are not held up by it.
        task = asyncio.get_running_loop().create_task(self._confirm(nc, sub))
        self.confirming.add(task)
        task.add_done_callback(self.confirming.discard)

    async def _confirm(self, nc: Client, sub: _Subscription[Any]) -> None:
        # A PONG after our SUB means the server has it: whatever is published from now on
        # reaches the subscription. While disconnected, nats-py replays the SUB on reconnect,
        # so the subscription stands; not confirming it is only worth a warning.
        error: BaseException | None = None
        try:
            if nc.is_connected:
                await nc.flush(timeout=_CONFIRM_TIMEOUT_S)
        except (OSError, nats.errors.Error) as e:
            logger.warning("NATS did not confirm the subscription to %s: %r", sub.subject, e)
        except asyncio.CancelledError:  # the bus is closing
            error = nats.errors.ConnectionClosedError()
            raise
        finally:
            self._thread.to_trio(sub.settle, error)

    async def unsubscribe(self, sub: _Subscription[Any]) -> None:
        """End the subscription with the server, if it came to be."""
        nats_sub, sub.nats_sub = sub.nats_sub, None
        if nats_sub is None:
            return  # it never came to be
        try:
            await nats_sub.unsubscribe()
        except (OSError, nats.errors.Error) as e:
            logger.debug("unsubscribing from %s: %r", sub.subject, e)
