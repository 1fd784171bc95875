"""``NatsEventBus``: the event bus across processes, over NATS core pub/sub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlsplit, urlunsplit

import trio

from hodei_core.events import Event

from .._registry import redact_url
from ._bridge import ConnectionState, _NatsThread
from ._codec import DEFAULT_PREFIX, decode_event, encode_event, pattern_subject, topic_subject
from ._codec import validate_prefix as _validate_prefix

__all__ = ["NatsEventBus", "open_nats_bus"]


class NatsEventBus:
    """An ``EventBus`` over NATS: events reach subscribers in every process connected to the
    same server (and subject prefix). Open it with ``open_nats_bus``.

    Subjects are the event topics behind ``subject_prefix``; payloads are JSON. A ``JobSpec``
    travels **without its secrets** (``JobFinished.job.spec.secrets`` arrives empty): events
    are hints, and the store keeps the secrets.

    Delivery is at most once, as the ``EventBus`` contract allows:

    - a subscription whose channel holds ``buffer`` unread events misses the next ones
      (counted in ``dropped``);
    - **while NATS is unreachable, ``publish`` neither waits nor raises: the event is dropped**,
      counted in ``unsent`` and logged (once per outage) on the ``hodei.nats`` logger. Consumers
      re-read the store on a timer, so the engine keeps working, only with more latency. The
      connection reconnects on its own, without limit, and subscriptions resume by themselves;
      ``healthy`` and ``connection_state`` say how things stand (the server shows ``healthy``
      as ``"bus"`` in ``/readyz`` and as ``hodei_bus_up`` in ``/metrics``).

    Failures that are not an outage raise ``BusError``, with the driver's exception as
    ``__cause__`` when there is one: opening when no server answers (or it refuses the
    credentials), subscribing on a connection that closed for good, using the bus after
    closing it.
    """

    def __init__(
        self,
        url: str,
        *,
        subject_prefix: str | None = None,
        buffer: int = 1024,
        reconnect_wait_s: float = 0.5,
        connect_timeout_s: float = 5.0,
        max_backlog: int = 10_000,
    ) -> None:
        """Prepare a bus; nothing connects before ``open_nats_bus`` (or ``aopen``).

        Args:
            url: ``nats://[user:password@]host:port``, several separated by commas for a
                cluster; ``?subject_prefix=...`` sets the prefix (when the argument does not).
            subject_prefix: put before every topic (default ``hodei.``), so that several
                installations can share a server: empty, or tokens each ending with a dot.
            buffer: how many unread events each subscription holds before it drops some.
            reconnect_wait_s: pause between reconnect attempts.
            connect_timeout_s: how long opening may take.
            max_backlog: messages waiting for the NATS thread before publishes are dropped.

        Raises:
            ValueError: the URL has unknown query parameters, or the prefix is not usable.
        """
        scheme, netloc, path, query, fragment = urlsplit(url)
        params = parse_qs(query)
        unknown = sorted(set(params) - {"subject_prefix"})
        if unknown:
            raise ValueError(
                f"unknown NATS URL parameter(s) {', '.join(unknown)} in {redact_url(url)!r}; "
                "known: subject_prefix"
            )
        if subject_prefix is None:
            subject_prefix = params.get("subject_prefix", [DEFAULT_PREFIX])[-1]
        self._prefix = _validate_prefix(subject_prefix)
        server_url = urlunsplit((scheme, netloc, path, "", fragment))
        servers = [s.strip() for s in server_url.split(",") if s.strip()]
        self._shown = redact_url(url)
        self._buffer = buffer
        self._nats = _NatsThread(
            servers,
            # the whole list at once: a server after the first may come without a scheme,
            # and alone it would not read as a URL with a secret in it
            shown=redact_url(server_url),
            reconnect_wait_s=reconnect_wait_s,
            connect_timeout_s=connect_timeout_s,
            max_backlog=max_backlog,
        )

    def __repr__(self) -> str:
        return f"<NatsEventBus {self._shown} prefix={self._prefix!r} state={self.connection_state}>"

    @property
    def url(self) -> str:
        """The URL, password redacted."""
        return self._shown

    @property
    def subject_prefix(self) -> str:
        """What comes before every topic in a subject."""
        return self._prefix

    @property
    def healthy(self) -> bool:
        """Whether the connection to NATS is up right now (events flow between processes)."""
        return self._nats.state == "connected"

    @property
    def connection_state(self) -> ConnectionState:
        """``connecting``, ``connected``, ``reconnecting`` (down, retrying) or ``closed``."""
        return self._nats.state

    @property
    def dropped(self) -> int:
        """Events a subscription missed because its channel was full."""
        return self._nats.dropped

    @property
    def unsent(self) -> int:
        """Events published but not sent: NATS was unreachable, or the NATS thread fell
        ``max_backlog`` messages behind."""
        return self._nats.unsent_down + self._nats.unsent_backlog

    async def aopen(self) -> None:
        """Connect (``open_nats_bus`` does it for you).

        Raises:
            BusError: no server answered within ``connect_timeout_s``, or it refused us.
        """
        await self._nats.start()

    async def aclose(self) -> None:
        """Close the connection; idempotent, and completes even when cancelled."""
        await self._nats.aclose()

    async def publish(self, event: Event) -> None:
        """Send ``event`` to every subscription whose pattern matches its topic, in every
        process. Never waits for the network; dropped while NATS is unreachable (see above).

        Raises:
            BusError: the bus was closed.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        self._nats.publish(topic_subject(self._prefix, event.topic), encode_event(event))

    @asynccontextmanager
    async def subscribe(self, pattern: str) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        """Receive the events matching ``pattern`` published while the context is open.

        Entering returns once the server has confirmed the subscription, so that every event
        published afterwards, by any process, is delivered. While NATS is down it returns at
        once: the subscription is replayed when the connection comes back.

        Raises:
            BusError: the bus was closed, or NATS refused the subscription.
        """
        send, receive = trio.open_memory_channel[Event](self._buffer)
        with send:
            async with receive:
                sub = await self._nats.subscribe(
                    pattern_subject(self._prefix, pattern), send, decode_event
                )
                try:
                    yield receive
                finally:
                    self._nats.unsubscribe(sub)


@asynccontextmanager
async def open_nats_bus(
    url: str,
    *,
    subject_prefix: str | None = None,
    buffer: int = 1024,
    reconnect_wait_s: float = 0.5,
    connect_timeout_s: float = 5.0,
    max_backlog: int = 10_000,
) -> AsyncIterator[NatsEventBus]:
    """Open a ``NatsEventBus`` on ``url`` (see ``NatsEventBus`` for the options); leaving the
    context closes the connection (``close()``, not ``drain()``: pending events are hints).

    Raises:
        BusError: no server answered within ``connect_timeout_s``, or it refused us.
        ValueError: the URL or the prefix is not usable.
    """
    bus = NatsEventBus(
        url,
        subject_prefix=subject_prefix,
        buffer=buffer,
        reconnect_wait_s=reconnect_wait_s,
        connect_timeout_s=connect_timeout_s,
        max_backlog=max_backlog,
    )
    await bus.aopen()
    try:
        yield bus
    finally:
        await bus.aclose()
