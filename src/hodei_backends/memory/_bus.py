"""The in-memory event bus: subscriptions in this process, delivered through trio channels."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from hodei_core.events import Event, topic_matches

__all__ = ["MemoryEventBus"]


class MemoryEventBus:
    """An ``EventBus`` for one process.

    Publishing never waits: a subscriber whose buffer (``buffer`` events) is full misses the
    event, as the bus contract allows. Subscriptions to a literal topic are found by a dict
    lookup, and patterns with wildcards are filed under their literal prefix (``workers.w1``
    for ``workers.w1.>``), so a publish costs a few dict lookups whether 10 or 10,000
    subscriptions are open.
    """

    def __init__(self, buffer: int = 1024) -> None:
        self._buffer = buffer
        self._exact: dict[str, set[trio.MemorySendChannel[Event]]] = {}
        # pattern of each subscription filed under a prefix; None for "<prefix>.>", which
        # matches every topic filed there (a worker's inbox is one: the common case)
        self._prefixed: dict[str, dict[trio.MemorySendChannel[Event], str | None]] = {}
        # the first token of each key of _prefixed, counted: what a publish looks at first
        self._heads: Counter[str] = Counter()
        self.dropped = 0  # events a full subscriber missed; visible to tests and metrics

    def __repr__(self) -> str:
        n = sum(map(len, self._exact.values())) + sum(map(len, self._prefixed.values()))
        return f"<MemoryEventBus subscriptions={n}>"

    async def publish(self, event: Event) -> None:
        """Deliver ``event`` to every matching subscription now. Never waits, and is not a
        checkpoint: every change of a job publishes, and the services that publish checkpoint
        in their store calls."""
        self.publish_nowait(event)

    def publish_nowait(self, event: Event) -> None:
        """Deliver ``event`` without being an async function (for synchronous callers)."""
        topic = event.topic
        exact = self._exact.get(topic)
        if exact:
            for channel in exact:
                self._send(channel, event)
        heads = self._heads
        if not heads:
            return
        end = topic.find(".")
        # most topics have no pattern under their first token: one lookup tells
        if "" in heads or (topic if end < 0 else topic[:end]) in heads:
            # every proper prefix of the topic that ends before a dot: "", "jobs", "jobs.t1"…
            prefixed = self._prefixed
            prefix = ""
            while True:
                patterns = prefixed.get(prefix)
                if patterns:
                    for channel, pattern in patterns.items():
                        if pattern is None or topic_matches(pattern, topic):
                            self._send(channel, event)
                if end < 0:
                    break
                prefix = topic[:end]
                end = topic.find(".", end + 1)

    def _send(self, channel: trio.MemorySendChannel[Event], event: Event) -> None:
        try:
            channel.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
        except trio.BrokenResourceError:
            pass  # the subscriber closed its end early; its subscription ends with its context

    @asynccontextmanager
    async def subscribe(self, pattern: str) -> AsyncIterator[trio.MemoryReceiveChannel[Event]]:
        """Receive the events matching ``pattern`` while the context is open."""
        send, receive = trio.open_memory_channel[Event](self._buffer)
        tokens = pattern.split(".")
        wild = [i for i, t in enumerate(tokens) if t in ("*", ">")]
        literal = not wild
        prefix = "" if literal else ".".join(tokens[: wild[0]])
        if literal:
            self._exact.setdefault(pattern, set()).add(send)
        else:
            # a topic is looked for under each prefix that ends before one of its dots, so
            # under "<prefix>" it always has a token more: "<prefix>.>" needs no matching
            everything_below = wild == [len(tokens) - 1] and tokens[-1] == ">" and bool(prefix)
            self._prefixed.setdefault(prefix, {})[send] = None if everything_below else pattern
            self._heads[prefix.partition(".")[0]] += 1
        try:
            async with receive:
                yield receive
        finally:
            if literal:
                subscribers = self._exact[pattern]
                subscribers.discard(send)
                if not subscribers:
                    del self._exact[pattern]
            else:
                patterns = self._prefixed[prefix]
                del patterns[send]
                if not patterns:
                    del self._prefixed[prefix]
                head = prefix.partition(".")[0]
                self._heads[head] -= 1
                if not self._heads[head]:
                    del self._heads[head]
            send.close()
