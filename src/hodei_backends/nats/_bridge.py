"""The one place where trio meets nats-py, which runs on its own event loop in its own thread.

nats-py is asyncio-only, so ``_NatsThread`` runs it on a private asyncio loop in a daemon
thread (``_LoopThread``) and offers trio a few coarse operations. Everything trio asks for
goes through one FIFO of commands (publish, subscribe, unsubscribe) that one asyncio task
carries out in order, so the server sees them in the order trio issued them: an event
published before a subscription is never delivered to it, and one publisher's events keep
their order.

Trio never waits for the loop thread except to connect, to close, and for the server to confirm
a subscription. Messages come back through ``TrioToken.run_sync_soon`` into trio memory
channels; a full channel drops the message (at-most-once delivery) and counts it. What each
subscription does in both threads is in ``_subscriptions``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import nats.errors
import trio
from nats.aio.client import Client

from hodei_core.errors import BusError

from ._loop_thread import _LoopThread
from ._subscriptions import _Subscription, _Subscriptions

__all__ = ["ConnectionState", "_NatsThread", "_Subscription"]

logger = logging.getLogger("hodei.nats")

T = TypeVar("T")
ConnectionState = Literal["connecting", "connected", "reconnecting", "closed"]

#: How long closing may take.
_CLOSE_TIMEOUT_S = 5.0
#: How long trio waits for the loop thread to take a subscription: far beyond the confirm
#: timeout (``_subscriptions._CONFIRM_TIMEOUT_S``), so it only fires if the loop thread is
#: stuck, which must not hang trio as well.
_SUBSCRIBE_TIMEOUT_S = 10.0
#: At most one "could not send" warning per this many seconds, during a long outage.
_WARN_EVERY_S = 10.0


_Command = (
    tuple[Literal["pub"], str, bytes]
    | tuple[Literal["sub"], _Subscription[Any]]
    | tuple[Literal["unsub"], _Subscription[Any]]
)


class _NatsThread:
    """A nats-py connection on an asyncio loop in a dedicated thread, driven from trio.

    Args:
        servers: NATS URLs (credentials in them are used, never logged).
        shown: the URLs as logs may show them (passwords redacted).
        reconnect_wait_s: pause between reconnect attempts; reconnecting never gives up.
        connect_timeout_s: how long opening may take before it fails.
        max_backlog: commands waiting for the loop thread beyond which publishes are dropped.
    """

    def __init__(
        self,
        servers: list[str],
        *,
        shown: str,
        reconnect_wait_s: float,
        connect_timeout_s: float,
        max_backlog: int,
    ) -> None:
        self._servers = servers
        self._shown = shown
        self._reconnect_wait_s = reconnect_wait_s
        self._connect_timeout_s = connect_timeout_s
        self._max_backlog = max_backlog
        self._thread = _LoopThread("hodei-nats", self._finalize)
        self._started = False
        self._nc: Client | None = None
        # Shared by both threads: deque appends and pops are atomic. Trio appends, then wakes
        # the loop unless a wake-up is already on its way (_kicked), which saves a cross-thread
        # call per publish under load. The loop clears _kicked before it sets _wakeup, so an
        # append that saw _kicked set is always followed by a wake-up that finds it.
        self._commands: collections.deque[_Command] = collections.deque()
        self._kicked = False
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._subs = _Subscriptions(self._thread)
        self._closing = False  # trio only
        self._outage_logged = False  # loop only
        self._last_backlog_warning = -_WARN_EVERY_S  # trio only
        #: Published events not sent: NATS unreachable (loop thread) / backlog full (trio).
        self.unsent_down = 0
        self.unsent_backlog = 0

    # -- state, readable from trio ------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """Where the connection is; nats-py's status flags are single attribute reads."""
        nc = self._nc
        if self._closing or (nc is not None and nc.is_closed):
            return "closed"
        if nc is None or nc.is_connecting:
            return "connecting"
        return "connected" if nc.is_connected else "reconnecting"

    @property
    def dropped(self) -> int:
        """Messages a full subscription channel missed."""
        return self._subs.dropped

    # -- lifecycle (trio) ---------------------------------------------------------------------

    async def start(self) -> None:
        """Start the thread and connect.

        Raises:
            BusError: no server answered within ``connect_timeout_s`` (or it refused us).
        """
        self._thread.start()
        self._started = True
        try:
            await self._thread.run(self._connect())
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """Close the connection (``close()``, not ``drain()``) and stop the thread. Idempotent;
        finishes even when the caller is cancelled, as a shielded and bounded step."""
        if self._closing:
            return
        self._closing = True
        with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT_S) as scope:
            if self._thread.running:
                try:
                    await self._thread.run(self._shutdown())
                finally:
                    await self._thread.stop()
        if scope.cancelled_caught:
            logger.warning("closing the NATS connection to %s took too long", self._shown)

    # -- operations (trio) --------------------------------------------------------------------

    def publish(self, subject: str, payload: bytes) -> None:
        """Hand a message to the loop thread; never waits. Dropped (counted, logged) when the
        loop thread is ``max_backlog`` commands behind.

        Raises:
            BusError: the connection is closed.
        """
        self._check_open()
        if len(self._commands) >= self._max_backlog:
            self.unsent_backlog += 1
            now = trio.current_time()
            if now - self._last_backlog_warning >= _WARN_EVERY_S:
                self._last_backlog_warning = now
                logger.warning(
                    "NATS publishing is %d messages behind; dropping events (%d so far)",
                    self._max_backlog,
                    self.unsent_backlog,
                )
            return
        self._command(("pub", subject, payload))

    async def subscribe(
        self, subject: str, send: trio.MemorySendChannel[T], decode: Callable[[bytes], T]
    ) -> _Subscription[T]:
        """Subscribe to ``subject``; returns once the server has confirmed it (or, while the
        connection is down, once it is registered to be replayed on reconnect). Each message is
        decoded with ``decode`` in the loop thread and sent to ``send``.

        Raises:
            BusError: the connection is closed or refused the subscription.
        """
        self._check_open()
        sub = _Subscription(subject, send, decode)
        self._command(("sub", sub))
        try:
            with trio.fail_after(_SUBSCRIBE_TIMEOUT_S):
                await sub.ready.wait()
        except BaseException as e:
            self.unsubscribe(sub)  # queued after the subscription, so it always undoes it
            if isinstance(e, trio.TooSlowError):
                raise BusError(f"the NATS thread did not take {subject!r} in time") from e
            raise
        if sub.error is not None:
            raise BusError(f"could not subscribe to {subject!r}") from sub.error
        return sub

    def unsubscribe(self, sub: _Subscription[Any]) -> None:
        """End a subscription; never waits. A no-op once the connection is closed."""
        if not self._closing:
            self._command(("unsub", sub))

    def _check_open(self) -> None:
        if self._closing:
            raise BusError(f"the NATS event bus for {self._shown} is closed")
        if not self._started:
            raise BusError(f"the NATS event bus for {self._shown} is not open yet")

    def _command(self, command: _Command) -> None:
        self._commands.append(command)
        if not self._kicked:
            self._kicked = True
            self._thread.call_soon(self._on_kick)

    # -- the loop thread ----------------------------------------------------------------------

    def _on_kick(self) -> None:
        self._kicked = False
        if self._wakeup is not None:
            self._wakeup.set()

    async def _connect(self) -> None:
        nc = Client()
        try:
            await asyncio.wait_for(
                nc.connect(
                    self._servers,
                    name="hodei",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,  # an outage may last; never give up
                    # nats-py annotates these as int but only sleeps/waits on them.
                    reconnect_time_wait=self._reconnect_wait_s,  # type: ignore[arg-type]
                    connect_timeout=self._connect_timeout_s,  # type: ignore[arg-type]
                    # a full send buffer waits this long for the socket, not forever
                    flush_timeout=self._connect_timeout_s,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                    error_cb=self._on_error,
                ),
                self._connect_timeout_s,
            )
        except (OSError, nats.errors.Error) as e:  # TimeoutError is an OSError
            cause = nc.last_error or e
            await self._close_client(nc)
            raise BusError(f"could not connect to NATS at {self._shown}: {cause!r}") from cause
        except asyncio.CancelledError:  # closed while connecting
            await self._close_client(nc)
            raise
        self._nc = nc
        self._wakeup = asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._work())
        self._on_kick()  # anything queued meanwhile
        logger.info("connected to NATS at %s", self._shown)

    async def _shutdown(self) -> None:
        for task in [self._worker, *self._subs.confirming]:
            if task is not None:
                task.cancel()
        # Nobody may wait for a subscription forever (cancelled confirmations settle too).
        while self._commands:
            command = self._commands.popleft()
            if command[0] == "sub":
                self._thread.to_trio(command[1].settle, nats.errors.ConnectionClosedError())
        if self._nc is not None:
            await self._close_client(self._nc)

    async def _close_client(self, nc: Client) -> None:
        # Closing is best effort: some nats-py releases fail to close a client whose connect
        # never got through, and a failure here must not hide why we are closing.
        try:
            await nc.close()
        except Exception:
            logger.debug("closing the NATS client for %s failed", self._shown, exc_info=True)

    async def _finalize(self) -> None:
        if self._nc is not None:  # a connect that finished after the bus began to close
            await self._close_client(self._nc)

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._commands:
                command = self._commands.popleft()
                try:
                    if command[0] == "pub":
                        await self._publish(command[1], command[2])
                    elif command[0] == "sub":
                        assert self._nc is not None
                        await self._subs.subscribe(self._nc, command[1])
                    else:
                        await self._subs.unsubscribe(command[1])
                except Exception:  # one bad command must not stop the others
                    logger.exception("NATS command %s failed", command[0])

    async def _publish(self, subject: str, payload: bytes) -> None:
        assert self._nc is not None
        # Dropped rather than buffered while disconnected: events are hints to re-read the
        # store, so a stale backlog replayed after an outage helps nobody, and would reach
        # subscriptions made after those events were published.
        if not self._nc.is_connected:
            self._unsent("not connected")
            return
        try:
            await self._nc.publish(subject, payload)
        except (OSError, nats.errors.Error) as e:
            self._unsent(repr(e))

    def _unsent(self, reason: str) -> None:
        self.unsent_down += 1
        if not self._outage_logged:
            self._outage_logged = True
            logger.warning(
                "NATS at %s: cannot send events (%s); dropping them until it is back "
                "(the store stays the source of truth)",
                self._shown,
                reason,
            )

    # -- nats-py callbacks (loop thread) ------------------------------------------------------

    async def _on_disconnected(self) -> None:
        if not self._closing:
            logger.warning("lost the NATS connection to %s; reconnecting", self._shown)

    async def _on_reconnected(self) -> None:
        self._outage_logged = False
        logger.info(
            "reconnected to NATS at %s (%d events not sent so far)",
            self._shown,
            self.unsent_down + self.unsent_backlog,
        )

    async def _on_closed(self) -> None:
        if not self._closing:
            logger.error("the NATS connection to %s closed for good", self._shown)

    async def _on_error(self, e: Exception) -> None:
        nc = self._nc
        # While reconnecting, every failed attempt reports an error: keep that out of sight.
        level = logging.DEBUG if nc is None or not nc.is_connected else logging.WARNING
        logger.log(level, "NATS at %s: %r", self._shown, e)
