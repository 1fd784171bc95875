"""``EventBusContract``: the tests every ``EventBus`` adapter must pass, and its helpers."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

import trio

from ..._models import (
    FailureReason,
    Job,
    JobSpec,
    JobState,
    Resources,
    RunState,
)
from ...events import (
    Event,
    JobAssigned,
    JobCancelRequested,
    JobFinished,
    JobStarted,
    JobSubmitted,
    LogAppended,
    RunFinished,
    SchedulerWake,
    WorkerDrainRequested,
    WorkerLeft,
    WorkerLost,
    WorkerRegistered,
)
from ...ports import EventBus
from ._support import _T0, _BusCapabilities

#: How long any single receive may take before the bus counts as broken (rather than hanging).
RECEIVE_TIMEOUT_S = 5.0

#: How many unread events a subscription must hold before its bus may drop some.
MIN_BUFFERED_EVENTS = 64


def _sample_job() -> Job:
    return Job(
        id="j1",
        tenant="team-a",
        spec=JobSpec(
            command=("echo", "hi there"),
            env={"LEVEL": "full", "UNICODE": "ü"},
            labels=frozenset({"linux", "gpu"}),
            resources=Resources(1.5, 256),
            timeout_s=30.5,
            retries=2,
            priority=3,
            name="build",
        ),
        state=JobState.FAILED,
        attempt=2,
        worker_id="w1",
        exit_code=3,
        failure=FailureReason.SCRIPT_FAILURE,
        created_at=_T0,
        assigned_at=_T0 + 1,
        started_at=_T0 + 2.5,
        finished_at=_T0 + 4,
        run_id="r1",
        step="build",
    )


def _sample_events() -> list[Event]:
    """One event of every class, with every field set to something other than its default."""
    return [
        JobSubmitted("j1", "team-a"),
        JobAssigned("j1", "team-a", 2, "w1"),
        JobStarted("j1", "team-a", 2, "w1"),
        LogAppended("j1", "team-a", 2, 41),
        JobFinished(_sample_job()),
        JobCancelRequested("j1", "team-a", 2, "w1"),
        WorkerRegistered("w1"),
        WorkerDrainRequested("w1"),
        WorkerLeft("w1"),
        WorkerLost("w1", ("j1", "j2")),
        RunFinished("r1", "team-a", RunState.FAILED),
        SchedulerWake(),
    ]


async def _receive(channel: trio.MemoryReceiveChannel[Event]) -> Event:
    # A broken adapter must fail the test, not hang the whole run.
    with trio.fail_after(RECEIVE_TIMEOUT_S):
        return await channel.receive()


async def _assert_next_is(channel: trio.MemoryReceiveChannel[Event], expected: Event) -> None:
    received = await _receive(channel)
    assert received == expected, f"expected {expected!r}, received {received!r}"


def _at(middle: str) -> WorkerRegistered:
    """An event on the topic ``workers.<middle>.registered``.

    ``middle`` may contain dots, which makes topics of any length to match patterns against:
    the bus deals in topics and must not care what their tokens mean.
    """
    return WorkerRegistered(middle)


async def _check_pattern(
    bus: EventBus, pattern: str, *, published: Sequence[Event], expected: Sequence[Event]
) -> None:
    """Subscribe to ``pattern``, publish ``published`` and check exactly ``expected`` arrive.

    The last event published must be the last one expected (a marker): as delivery keeps the
    publisher's order, any event wrongly delivered shows up before it, without sleeping.
    """
    assert published[-1] == expected[-1], "the last event published must be expected"
    async with bus.subscribe(pattern) as channel:
        for event in published:
            await bus.publish(event)
        for event in expected:
            received = await _receive(channel)
            assert received == event, (
                f"pattern {pattern!r}: expected {event!r} ({event.topic}), "
                f"received {received!r} ({received.topic})"
            )


class EventBusContract(_BusCapabilities):
    """The tests every ``hodei_core.ports.EventBus`` adapter must pass.

    Subclass it in a ``Test*`` class and provide a ``bus`` fixture (see the module docstring).
    To show that an event was *not* delivered without sleeping, a test publishes a later event
    that does match and checks that it is the first one to arrive: delivery keeps each
    publisher's order.

    At-most-once delivery lets a bus drop events for a subscriber that does not keep up. The
    suite publishes at most ``MIN_BUFFERED_EVENTS`` events before it reads them, so it assumes
    a subscription holds at least that many unread events before dropping any.

    An adapter whose events reach other processes includes ``CrossProcessBusContract`` as
    well, which sets ``cross_process``.

    Attributes:
        durable: the bus keeps events for subscribers that were away (not required; no test
            uses it).
        cross_process: events reach subscribers in other processes.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # as for stores: a claim whose tests would not run is refused
        from ._bus_shared import CrossProcessBusContract  # noqa: PLC0415 - it imports this

        claimed, included = cls.cross_process, issubclass(cls, CrossProcessBusContract)
        if claimed != included:
            raise TypeError(
                f"{cls.__qualname__} sets cross_process = {claimed} but"
                f" {'includes' if included else 'does not include'} CrossProcessBusContract:"
                " a bus test class claims the capability by including the suite (which needs"
                " an open_bus fixture), not by the attribute"
            )

    async def test_literal_subscription_receives_the_event(self, bus: EventBus) -> None:
        """A subscription to an event's exact topic receives it."""
        event = JobStarted("j1", "t1", 1, "w1")
        async with bus.subscribe("jobs.t1.j1.started") as channel:
            await bus.publish(event)
            await _assert_next_is(channel, event)

    async def test_other_topics_are_not_delivered(self, bus: EventBus) -> None:
        """A literal pattern receives nothing for other topics, also longer or shorter ones
        that share tokens with it."""
        await _check_pattern(
            bus,
            "workers.w1.registered",
            published=[
                WorkerRegistered("w2"),
                WorkerLost("w1"),
                WorkerRegistered("w1.x"),  # one token more
                JobSubmitted("w1", "registered"),
                SchedulerWake(),
                WorkerRegistered("w1"),
            ],
            expected=[WorkerRegistered("w1")],
        )

    async def test_star_matches_exactly_one_token(self, bus: EventBus) -> None:
        """``*`` stands for exactly one token: never none, never two."""
        await _check_pattern(
            bus,
            "workers.*.registered",
            published=[_at("w1"), _at("a.b"), WorkerLost("w1"), _at("w2")],
            expected=[_at("w1"), _at("w2")],
        )
        await _check_pattern(
            bus,
            "workers.a.*.registered",
            published=[_at("a"), _at("a.b.c"), _at("b.x"), _at("a.x")],
            expected=[_at("a.x")],
        )
        await _check_pattern(
            bus,
            "*.wake",
            published=[_at("wake"), SchedulerWake()],
            expected=[SchedulerWake()],
        )
        await _check_pattern(
            bus,
            "workers.*.*",
            published=[_at("w1"), _at("a.b"), JobSubmitted("j1", "t1"), WorkerLost("w2")],
            expected=[_at("w1"), WorkerLost("w2")],
        )
        await _check_pattern(
            bus,
            "*.*.*.*",
            published=[_at("w1"), _at("a.b"), SchedulerWake(), JobSubmitted("j1", "t1")],
            expected=[_at("a.b"), JobSubmitted("j1", "t1")],
        )

    async def test_trailing_gt_matches_one_or_more_tokens(self, bus: EventBus) -> None:
        """A trailing ``>`` stands for one or more whole tokens."""
        await _check_pattern(
            bus,
            "workers.w1.>",
            published=[
                WorkerLost("w1"),
                WorkerLost("w10"),  # shares a prefix as a string, not as a token
                WorkerLost("w2"),
                _at("w1.x"),
                JobAssigned("j1", "t1", 1, "w1"),
                _at("w1"),
            ],
            expected=[WorkerLost("w1"), _at("w1.x"), JobAssigned("j1", "t1", 1, "w1"), _at("w1")],
        )
        await _check_pattern(
            bus,
            "workers.a.registered.>",
            published=[_at("a"), _at("a.registered")],  # none after it, then one
            expected=[_at("a.registered")],
        )
        await _check_pattern(
            bus,
            "jobs.t1.>",
            published=[
                JobStarted("j1", "t10", 1, "w1"),
                JobStarted("j1", "t2", 1, "w1"),
                _at("t1"),
                JobStarted("j1", "t1", 1, "w1"),
            ],
            expected=[JobStarted("j1", "t1", 1, "w1")],
        )
        everything = [*_sample_events(), _at("a.b.c.d.e")]
        await _check_pattern(bus, ">", published=everything, expected=everything)

    async def test_several_subscribers_each_receive_once(self, bus: EventBus) -> None:
        """Every matching subscription gets its own copy, exactly once."""
        event = JobAssigned("j1", "t1", 1, "w1")
        marker = JobAssigned("j2", "t1", 1, "w1")  # same topic, told apart by its fields
        async with (
            bus.subscribe("workers.w1.assigned") as a,
            bus.subscribe("workers.w1.assigned") as b,
            bus.subscribe("workers.*.assigned") as c,
            bus.subscribe("workers.>") as d,
        ):
            await bus.publish(event)
            await bus.publish(WorkerLost("w1"))
            await bus.publish(marker)
            for channel in [a, b, c]:
                await _assert_next_is(channel, event)
                await _assert_next_is(channel, marker)
            everything: list[Event] = [event, WorkerLost("w1"), marker]
            for expected in everything:
                await _assert_next_is(d, expected)

    async def test_a_waiting_receiver_is_woken(self, bus: EventBus) -> None:
        """A task already waiting on its subscription gets an event published by another task
        (how a worker's long-poll is woken)."""
        # Imported here: trio.testing loads pytest when it is installed, and importing this
        # module must not.
        from trio.testing import wait_all_tasks_blocked  # noqa: PLC0415

        event = JobAssigned("j1", "t1", 1, "w1")
        received: list[Event] = []
        async with bus.subscribe("workers.w1.assigned") as channel:

            async def wait() -> None:
                received.append(await _receive(channel))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait)
                # Let the waiter block in receive() first; the test holds either way.
                await wait_all_tasks_blocked()
                await bus.publish(event)
        assert received == [event]

    async def test_events_published_before_subscribing_are_not_received(
        self, bus: EventBus
    ) -> None:
        """A subscription sees only what is published while it is open."""
        await bus.publish(JobSubmitted("early", "t1"))
        async with bus.subscribe("jobs.>") as channel:
            marker = JobSubmitted("late", "t1")
            await bus.publish(marker)
            await _assert_next_is(channel, marker)

    async def test_publish_order_is_kept(self, bus: EventBus) -> None:
        """Events from one publisher arrive in the order published, across topics too."""
        async with bus.subscribe("jobs.t1.>") as channel:
            events: list[Event] = []
            for i in range(50):
                events.append(LogAppended("j1", "t1", 1, i))
                if i % 10 == 0:
                    events.append(JobSubmitted(f"j{i}", "t1"))
            assert len(events) <= MIN_BUFFERED_EVENTS
            for event in events:
                await bus.publish(event)
            for expected in events:
                await _assert_next_is(channel, expected)

    async def test_publish_without_subscribers(self, bus: EventBus) -> None:
        """Publishing with nobody listening is fine."""
        for event in _sample_events():
            await bus.publish(event)

    async def test_publish_after_the_subscription_closed(self, bus: EventBus) -> None:
        """Closing a subscription stops its delivery; publishing goes on without error, and a
        new subscription gets only new events, once."""
        for _ in range(3):
            async with bus.subscribe("workers.w1.>") as channel:
                await bus.publish(WorkerRegistered("w1"))
                await _assert_next_is(channel, WorkerRegistered("w1"))
            async with bus.subscribe("workers.w1.registered") as channel:
                pass
        for _ in range(10):
            await bus.publish(WorkerLost("w1"))
        async with bus.subscribe("workers.w1.>") as channel:
            marker = WorkerRegistered("w1")
            await bus.publish(marker)
            await bus.publish(WorkerLost("w1"))
            await _assert_next_is(channel, marker)
            await _assert_next_is(channel, WorkerLost("w1"))

    async def test_a_subscriber_that_closes_its_channel_does_not_break_publish(
        self, bus: EventBus
    ) -> None:
        """A subscriber may close its receive channel before leaving the context (e.g. a
        task that did ``async with channel:``); publishers must not notice."""
        async with (
            bus.subscribe("sched.wake") as healthy,
            bus.subscribe("sched.wake") as closed,
            bus.subscribe("sched.>") as closed_pattern,
        ):
            await closed.aclose()
            await closed_pattern.aclose()
            await bus.publish(SchedulerWake())
            await _assert_next_is(healthy, SchedulerWake())

    async def test_a_slow_subscriber_does_not_block_the_publisher(self, bus: EventBus) -> None:
        """A subscriber that never reads may miss events, but never blocks the publisher."""
        async with bus.subscribe("jobs.t1.j1.log"):
            with trio.fail_after(RECEIVE_TIMEOUT_S):
                for i in range(2_000):
                    await bus.publish(LogAppended("j1", "t1", 1, i))
            async with bus.subscribe("jobs.t1.j1.log") as fresh:
                marker = LogAppended("j1", "t1", 1, 2_000)
                await bus.publish(marker)
                await _assert_next_is(fresh, marker)

    async def test_every_event_class_round_trips(self, bus: EventBus) -> None:
        """Every event arrives equal to what was published, of the same class."""
        samples = _sample_events()
        assert {type(e) for e in samples} == set(typing.get_args(Event)), (
            "the suite has no sample of some event class; add one to _sample_events"
        )
        async with bus.subscribe(">") as channel:
            for event in samples:
                await bus.publish(event)
            for event in samples:
                received = await _receive(channel)
                assert type(received) is type(event)
                assert received == event
                assert received.topic == event.topic

    async def test_every_event_reaches_its_topic_and_wildcards_of_it(self, bus: EventBus) -> None:
        """Each event class reaches a subscription to its exact topic and one with the last
        token replaced by ``*``."""
        for event in _sample_events():
            pattern = event.topic.rsplit(".", 1)[0] + ".*"
            async with (
                bus.subscribe(event.topic) as literal,
                bus.subscribe(pattern) as wildcard,
            ):
                await bus.publish(event)
                await _assert_next_is(literal, event)
                await _assert_next_is(wildcard, event)
