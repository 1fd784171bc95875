"""``CrossProcessBusContract``: what is published through one bus reaches the subscribers of
another bus opened on the same location, as it would another process's."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from ...events import JobSubmitted, LogAppended, SchedulerWake, topic_matches
from ...ports import EventBus
from ._bus import _assert_next_is, _receive, _sample_events
from ._support import _BusCapabilities

#: Opens another bus on the test's location each time it is called.
BusOpener = Callable[[], AbstractAsyncContextManager[EventBus]]


class CrossProcessBusContract(_BusCapabilities):
    """The tests of a bus whose events reach other processes.

    An adapter's test class includes it next to ``EventBusContract`` and provides an
    ``open_bus`` fixture (``BusOpener``): each call opens another bus on the test's location,
    one that other tests do not publish on (for a server, a subject prefix of the test's own,
    say). Two buses opened so stand for two processes; once ``subscribe`` has returned, what
    the other publishes reaches it.
    """

    cross_process = True

    async def test_events_reach_the_subscribers_of_another_bus(self, open_bus: BusOpener) -> None:
        """Every event, whole, in order, to a subscription to everything and to a wildcard."""
        async with (
            open_bus() as near,
            open_bus() as far,
            far.subscribe(">") as everything,
            far.subscribe("workers.w1.*") as w1,
        ):
            samples = _sample_events()
            for event in samples:
                await near.publish(event)
            for event in samples:
                received = await _receive(everything)
                assert type(received) is type(event)
                assert received == event
            for event in [e for e in samples if topic_matches("workers.w1.*", e.topic)]:
                assert await _receive(w1) == event

    async def test_one_publisher_keeps_its_order_across_buses(self, open_bus: BusOpener) -> None:
        async with (
            open_bus() as near,
            open_bus() as far,
            far.subscribe("jobs.t1.j1.log") as channel,
        ):
            events = [LogAppended("j1", "t1", 1, i) for i in range(60)]
            for event in events:
                await near.publish(event)
            assert [await _receive(channel) for _ in events] == events

    async def test_subscribers_on_both_buses_each_receive_once(self, open_bus: BusOpener) -> None:
        """The publisher's own bus delivers too, and nothing twice."""
        async with (
            open_bus() as near,
            open_bus() as far,
            near.subscribe("jobs.>") as here,
            far.subscribe("jobs.>") as there,
        ):
            first, marker = JobSubmitted("j1", "t1"), JobSubmitted("j2", "t1")
            await near.publish(first)
            await near.publish(SchedulerWake())  # not theirs
            await near.publish(marker)
            for channel in (here, there):
                await _assert_next_is(channel, first)
                await _assert_next_is(channel, marker)  # not ``first`` again
