"""``NatsEventBus`` against a real nats-server: the EventBus contract, events between two
connections, the engine on NATS, and the server going away in the middle."""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

# See test_contracts_memory.py: let pytest show the values a failing contract compared.
if "hodei_core.testing.contracts" not in sys.modules:
    pytest.register_assert_rewrite("hodei_core.testing.contracts")

import hodei_backends.nats
from hodei_backends import open_embedded
from hodei_backends.nats import NatsEventBus, open_nats_bus
from hodei_core import BusError, Hodei, Job, JobSpec, JobState
from hodei_core.events import (
    Event,
    JobFinished,
    JobStarted,
    JobSubmitted,
    LogAppended,
    SchedulerWake,
    WorkerLost,
    WorkerRegistered,
    topic_matches,
)
from hodei_core.testing import ManualExecutor
from hodei_core.testing.contracts import BusOpener, CrossProcessBusContract, EventBusContract

from ._nats_server import NatsServer, free_port
from .conftest import FAST

RECEIVE_TIMEOUT_S = 5.0


async def _receive(channel: trio.MemoryReceiveChannel[Event]) -> Event:
    with trio.fail_after(RECEIVE_TIMEOUT_S):
        return await channel.receive()


async def _wait_until_healthy(bus: NatsEventBus, healthy: bool) -> None:
    # The server is another process: nothing to await, so poll the flag, boundedly.
    with trio.fail_after(10):
        while bus.healthy != healthy:  # noqa: ASYNC110 - set by another thread, not awaitable
            await trio.sleep(0.01)


class TestNatsEventBus(EventBusContract, CrossProcessBusContract):
    """``NatsEventBus`` keeps the ``EventBus`` contract, across connections too."""

    @pytest.fixture
    async def bus(self, nats_server: NatsServer) -> AsyncIterator[NatsEventBus]:
        """A bus on the session's server."""
        async with open_nats_bus(nats_server.url) as bus:
            yield bus

    @pytest.fixture
    def open_bus(self, nats_server: NatsServer) -> BusOpener:
        """Connections to the session's server, under a subject prefix of this test's own."""
        url = f"{nats_server.url}?subject_prefix=t{next(_PREFIXES)}."
        return lambda: open_nats_bus(url)


_PREFIXES = itertools.count()


# -- between connections --------------------------------------------------------------------


async def test_any_server_of_a_list_will_do(nats_server: NatsServer) -> None:
    url = f"nats://127.0.0.1:{free_port()},{nats_server.url}"  # nobody listens on the first
    async with open_nats_bus(url, reconnect_wait_s=0.05) as bus, bus.subscribe(">") as channel:
        await bus.publish(SchedulerWake())
        assert await _receive(channel) == SchedulerWake()


async def test_subject_prefixes_keep_installations_apart(nats_server: NatsServer) -> None:
    async with (
        open_nats_bus(nats_server.url, subject_prefix="blue.") as blue,
        open_nats_bus(f"{nats_server.url}?subject_prefix=green.") as green,
    ):
        assert green.subject_prefix == "green."
        async with blue.subscribe(">") as blue_events, green.subscribe(">") as green_events:
            await green.publish(JobSubmitted("green-job", "t1"))
            await blue.publish(JobSubmitted("blue-job", "t1"))
            await green.publish(SchedulerWake())
            # Each publisher's order is kept, so a leak would arrive before these.
            assert await _receive(blue_events) == JobSubmitted("blue-job", "t1")
            assert await _receive(green_events) == JobSubmitted("green-job", "t1")
            assert await _receive(green_events) == SchedulerWake()


async def test_topics_that_are_not_valid_subjects_still_travel(nats_server: NatsServer) -> None:
    odd: list[Event] = [
        JobStarted("j 1", "team a", 1, "w\t1"),  # whitespace would split the protocol line
        WorkerRegistered("*"),  # a wildcard as an id
        WorkerRegistered(">"),
        WorkerLost("a>b*c%d"),
        JobSubmitted("j1", ""),  # an empty token
        WorkerRegistered("ü.ß"),
    ]
    async with open_nats_bus(nats_server.url) as bus:
        for event in odd:
            published = [WorkerRegistered("other"), event]
            # "workers.*.registered" is a pattern with a wildcard, as it is on any bus
            expected = [e for e in published if topic_matches(event.topic, e.topic)]
            async with bus.subscribe(event.topic) as exact, bus.subscribe(">") as everything:
                for e in published:
                    await bus.publish(e)
                assert [await _receive(exact) for _ in expected] == expected
                assert [await _receive(everything) for _ in published] == published


# -- the engine on NATS ---------------------------------------------------------------------


async def _run_one_job(hodei: Hodei, manual: ManualExecutor, name: str) -> None:
    job = await hodei.submit(JobSpec(command=[name]))
    await manual.started(job.id)
    manual.finish(job.id, 0, output=f"{name}\n")
    job = await hodei.wait(job.id, timeout_s=10)
    assert job.state is JobState.SUCCEEDED
    assert await hodei.log_text(job.id) == f"{name}\n"


async def test_the_engine_runs_jobs_over_nats(
    nats_server: NatsServer, manual: ManualExecutor
) -> None:
    async with open_embedded(
        bus=nats_server.url, workers=2, executor=manual, worker_settings=FAST
    ) as hodei:
        assert isinstance(hodei.bus, NatsEventBus)
        with trio.fail_after(0.9):  # woken by events, well before any 1 s re-check
            await _run_one_job(hodei, manual, "first")


# One job at a time, to time each stage; an outage in the middle of a busy run between two
# engine processes is test_nats_outage.py, and how the server reports it test_health.py.
@pytest.mark.slow
async def test_the_engine_keeps_working_while_nats_is_down(
    own_nats_server: NatsServer, manual: ManualExecutor
) -> None:
    async with open_embedded(
        bus=own_nats_server.url, workers=2, executor=manual, worker_settings=FAST
    ) as hodei:
        assert isinstance(hodei.bus, NatsEventBus)
        await _run_one_job(hodei, manual, "before")
        own_nats_server.kill()
        await _wait_until_healthy(hodei.bus, False)
        await _run_one_job(hodei, manual, "during")  # found by re-reading the store
        await trio.to_thread.run_sync(own_nats_server.start)
        await _wait_until_healthy(hodei.bus, True)
        with trio.fail_after(0.9):
            await _run_one_job(hodei, manual, "after")


# -- secrets ----------------------------------------------------------------------------------


async def test_secrets_are_stripped_over_the_wire(nats_server: NatsServer) -> None:
    job = Job(id="j1", spec=JobSpec(script="deploy", secrets={"API_KEY": "s3cr3t"}))
    async with open_nats_bus(nats_server.url) as bus, bus.subscribe("jobs.>") as channel:
        await bus.publish(JobFinished(job))
        received = await _receive(channel)
    assert received == JobFinished(Job(id="j1", spec=JobSpec(script="deploy")))


# -- the connection -------------------------------------------------------------------------


async def test_the_server_restarting_is_survived(
    own_nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hodei.nats")
    async with open_nats_bus(own_nats_server.url, reconnect_wait_s=0.05) as bus:
        assert (bus.healthy, bus.connection_state) == (True, "connected")
        async with bus.subscribe("jobs.>") as before:
            own_nats_server.kill()
            await _wait_until_healthy(bus, False)
            assert (bus.healthy, bus.connection_state) == (False, "reconnecting")

            with trio.fail_after(1):  # the engine goes on while NATS is away
                for i in range(100):
                    await bus.publish(LogAppended("j1", "t1", 1, i))
            async with contextlib.AsyncExitStack() as stack:
                with trio.fail_after(1):  # subscribing does not wait for the server either
                    during = await stack.enter_async_context(bus.subscribe("jobs.>"))
                # Commands reach the NATS thread in order: the publishes are done with.
                assert bus.unsent == 100
                await trio.to_thread.run_sync(own_nats_server.start)
                await _wait_until_healthy(bus, True)
                marker = JobSubmitted("after", "t1")
                await bus.publish(marker)
                # what was published while down is gone, not replayed late
                assert await _receive(before) == marker
                assert await _receive(during) == marker
        async with bus.subscribe("jobs.>") as fresh:
            await bus.publish(marker)
            assert await _receive(fresh) == marker
    messages = [r.getMessage() for r in caplog.records if r.name == "hodei.nats"]
    assert any("lost the NATS connection" in m for m in messages), messages
    assert any("dropping them until it is back" in m for m in messages), messages
    assert any("reconnected to NATS" in m for m in messages), messages
    assert bus.connection_state == "closed"
    assert not bus.healthy


async def test_no_server_fails_to_open_with_bus_error() -> None:
    url = f"nats://hodei:pa55w0rd@127.0.0.1:{free_port()}"
    with trio.fail_after(5), pytest.raises(BusError) as caught:
        async with open_nats_bus(url, connect_timeout_s=0.3, reconnect_wait_s=0.05):
            pytest.fail("opened a bus without a server")
    assert caught.value.__cause__ is not None
    assert "pa55w0rd" not in str(caught.value)
    assert "hodei:***@" in str(caught.value)
    assert not any(t.name == "hodei-nats" for t in threading.enumerate())


async def test_every_server_of_a_list_has_its_password_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="hodei.nats")
    # a server after the first may come without a scheme
    first, second = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    url = f"nats://hodei:first-pa55@{first},hodei:second-pa55@{second}"
    with trio.fail_after(5), pytest.raises(BusError) as caught:
        async with open_nats_bus(url, connect_timeout_s=0.3, reconnect_wait_s=0.05):
            pytest.fail("opened a bus without a server")
    said = [str(caught.value), *(r.getMessage() for r in caplog.records)]
    assert not any("first-pa55" in text or "second-pa55" in text for text in said)
    assert f"hodei:***@{second}" in str(caught.value)


async def test_wrong_credentials_fail_to_open_with_bus_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hodei.nats")
    server = NatsServer(tmp_path / "nats", extra_args=("--user", "hodei", "--pass", "right"))
    server.start()
    try:
        url = server.url.replace("nats://", "nats://hodei:wr0ng-pa55@")
        with trio.fail_after(5), pytest.raises(BusError) as caught:
            async with open_nats_bus(url, connect_timeout_s=0.5, reconnect_wait_s=0.05):
                pytest.fail("opened a bus with the wrong password")
    finally:
        server.kill()
    assert "wr0ng-pa55" not in str(caught.value)
    assert caught.value.__cause__ is not None
    assert not any("wr0ng-pa55" in r.getMessage() for r in caplog.records)


async def test_credentials_are_redacted(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hodei.nats")
    # the server has no authorization, so it accepts any credentials
    url = nats_server.url.replace("nats://", "nats://hodei:pa55w0rd@")
    async with open_nats_bus(url) as bus:
        assert "pa55w0rd" not in repr(bus)
        assert "hodei:***@" in repr(bus)
        assert bus.url == url.replace("pa55w0rd", "***")
    assert caplog.records
    assert not any("pa55w0rd" in r.getMessage() for r in caplog.records)


async def test_a_closed_bus_raises_bus_error(nats_server: NatsServer) -> None:
    async with open_nats_bus(nats_server.url) as bus:
        pass
    with pytest.raises(BusError):
        await bus.publish(SchedulerWake())
    with pytest.raises(BusError):
        async with bus.subscribe(">"):
            pytest.fail("subscribed on a closed bus")
    await bus.aclose()  # closing again is fine


async def test_closing_while_cancelled_still_closes(nats_server: NatsServer) -> None:
    with trio.CancelScope() as scope:
        async with open_nats_bus(nats_server.url) as bus, bus.subscribe(">"):
            scope.cancel()
            await trio.sleep_forever()
    assert bus.connection_state == "closed"
    assert not any(t.name == "hodei-nats" for t in threading.enumerate())


async def test_a_full_backlog_drops_instead_of_waiting(nats_server: NatsServer) -> None:
    async with open_nats_bus(nats_server.url, max_backlog=0) as bus:
        with trio.fail_after(1):
            for _ in range(10):
                await bus.publish(SchedulerWake())
        assert bus.unsent == 10


@pytest.mark.parametrize(
    ("url", "prefix", "message"),
    [
        ("nats://127.0.0.1:4222?prefix=x.", None, "unknown NATS URL parameter"),
        ("nats://127.0.0.1:4222", "no-dot", "subject prefix"),
        ("nats://127.0.0.1:4222", "a.*.", "subject prefix"),
        ("nats://127.0.0.1:4222", "a b.", "subject prefix"),
    ],
)
def test_bad_options_are_refused(url: str, prefix: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NatsEventBus(url, subject_prefix=prefix)


def test_public_api() -> None:
    exported = hodei_backends.nats.__all__
    assert exported == sorted(exported)
    assert all(hasattr(hodei_backends.nats, name) for name in exported)


async def test_subscriptions_leave_nothing_behind(nats_server: NatsServer) -> None:
    async with open_nats_bus(nats_server.url) as bus:
        nc = bus._nats._nc
        assert nc is not None
        baseline = len(nc._subs)
        for _ in range(5):
            async with bus.subscribe("sched.wake"):
                pass
        with trio.CancelScope() as scope:
            scope.cancel()  # cancelled while waiting for the server's confirmation
            async with bus.subscribe("sched.wake"):
                pytest.fail("the subscription was entered in a cancelled scope")
        # Commands are carried out in order: once this one is confirmed, the others are done.
        async with bus.subscribe(">") as channel:
            assert len(nc._subs) == baseline + 1
            await bus.publish(SchedulerWake())
            assert await _receive(channel) == SchedulerWake()
