"""A waiting long-poll counts as its worker's heartbeat: the worker is not lost while it polls,
is lost once it stops, and is asked for rare heartbeats only while a poll of its waits."""

from __future__ import annotations

import contextlib

import httpx
import pytest
import trio
import trio.testing
from starlette.applications import Starlette

from hodei_backends import MemoryEventBus, MemoryStore
from hodei_core import Hodei, WorkerState
from hodei_core._lifecycle import transition_worker
from hodei_http import ServerSettings

from .conftest import Register

_LOST_AFTER_S = 30.0  # the engine's default, and the server's


@pytest.fixture
async def hodei(nursery: trio.Nursery, settings: ServerSettings) -> Hodei:
    """An engine on trio's clock, so that the test's clock moves its time too."""
    assert settings.lost_after_s == _LOST_AFTER_S
    engine = Hodei(
        store=MemoryStore(),
        bus=MemoryEventBus(),
        quotas=settings.quotas,
        clock=trio.current_time,
        lost_after_s=_LOST_AFTER_S,
    )
    await nursery.start(engine.run)
    return engine


async def _poll_until_cancelled(
    client: httpx.AsyncClient, worker_id: str, headers: dict[str, str]
) -> None:
    """An agent that long-polls, again and again, and never heartbeats."""
    while True:
        response = await client.post(
            f"/api/v1/workers/{worker_id}/poll", params={"wait": 25}, json={}, headers=headers
        )
        assert response.status_code == 204


async def test_a_worker_polling_without_heartbeats_stays_online_until_it_stops(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    app: Starlette,
    hodei: Hodei,
    client: httpx.AsyncClient,
    register: Register,
) -> None:
    # a served app runs the keep-alive in its lifespan, which the test transport does not run
    await nursery.start(app.state.api.polls.keep_alive, hodei, _LOST_AFTER_S)
    polling, polling_headers = await register("polling")
    silent, _ = await register("silent")
    async with trio.open_nursery() as agent:
        agent.start_soon(_poll_until_cancelled, client, polling, polling_headers)
        await trio.sleep(5 * _LOST_AFTER_S)
        assert (await hodei.workers.get(polling)).state is WorkerState.ONLINE
        assert (await hodei.workers.get(silent)).state is WorkerState.LOST
        agent.cancel_scope.cancel()
    # the poll is gone (a killed agent's connection closes): nothing speaks for the worker
    await trio.sleep(1.5 * _LOST_AFTER_S)
    assert (await hodei.workers.get(polling)).state is WorkerState.LOST


async def test_a_poll_waiting_longer_than_lost_after_s_is_no_sign_of_life(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    app: Starlette,
    hodei: Hodei,
    client: httpx.AsyncClient,
    register: Register,
) -> None:
    await nursery.start(app.state.api.polls.keep_alive, hodei, _LOST_AFTER_S)
    worker_id, headers = await register()

    async def one_long_poll() -> None:
        # a host that vanished leaves its poll waiting until the wait runs out
        await client.post(
            f"/api/v1/workers/{worker_id}/poll", params={"wait": 60}, json={}, headers=headers
        )

    nursery.start_soon(one_long_poll)
    await trio.sleep(_LOST_AFTER_S)
    assert (await hodei.workers.get(worker_id)).state is WorkerState.ONLINE
    # noted alive until the poll was lost_after_s old, then lost within lost_after_s more
    await trio.sleep(1.4 * _LOST_AFTER_S)
    assert (await hodei.workers.get(worker_id)).state is WorkerState.LOST


async def test_a_polling_worker_is_asked_for_rare_heartbeats_and_a_draining_one_is_not(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    app: Starlette,
    client: httpx.AsyncClient,
    register: Register,
) -> None:
    polls = app.state.api.polls
    polling, polling_headers = await register("polling")
    idle, idle_headers = await register("idle")

    async def pace(worker_id: str, headers: dict[str, str]) -> float:
        beat = await client.post(f"/api/v1/workers/{worker_id}/heartbeat", headers=headers)
        assert beat.status_code == 200
        interval: float = beat.json()["heartbeat_interval_s"]
        return interval

    async with trio.open_nursery() as agent:
        agent.start_soon(_poll_until_cancelled, client, polling, polling_headers)
        await trio.testing.wait_all_tasks_blocked()
        assert polling in polls and idle not in polls
        # one poll waits: the configured pace still
        assert (await pace(polling, polling_headers), await pace(idle, idle_headers)) == (5, 5)
        # as if 1,000 agents polled: 5 beats a second for those whose poll waits...
        others = contextlib.ExitStack()
        for n in range(999):
            others.enter_context(polls.waiting(f"other-{n}", trio.CancelScope(), 25.0))
        assert await pace(polling, polling_headers) == 200.0
        # ...while one that does not poll (it drains, say) keeps a pace it cannot be lost at
        assert await pace(idle, idle_headers) == 5.0  # polls_waiting (requests) is still 1
        app.state.api.metrics.polls_waiting = 400
        assert await pace(idle, idle_headers) == 8.0
        app.state.api.metrics.polls_waiting = 100_000
        assert await pace(idle, idle_headers) == _LOST_AFTER_S / 3
        for n in range(1_000):
            others.enter_context(polls.waiting(f"more-{n}", trio.CancelScope(), 25.0))
        assert await pace(polling, polling_headers) == 300.0  # never slower than 5 minutes
        others.close()
        assert len(polls) == 1
        agent.cancel_scope.cancel()


async def test_a_worker_told_to_drain_or_polling_long_keeps_the_bounded_pace(
    autojump_clock: trio.testing.MockClock,
    app: Starlette,
    hodei: Hodei,
    client: httpx.AsyncClient,
    register: Register,
) -> None:
    # once it drains it stops polling, and a poll longer than lost_after_s stops counting
    # before it ends: either way its heartbeats alone must keep it alive
    drained, drained_headers = await register("drained")
    long, long_headers = await register("long")

    async def pace(worker_id: str, headers: dict[str, str]) -> tuple[float, bool]:
        beat = await client.post(f"/api/v1/workers/{worker_id}/heartbeat", headers=headers)
        return beat.json()["heartbeat_interval_s"], beat.json()["drain"]

    async def poll(worker_id: str, headers: dict[str, str], wait: float) -> None:
        await client.post(
            f"/api/v1/workers/{worker_id}/poll", params={"wait": wait}, json={}, headers=headers
        )

    polls = app.state.api.polls
    others = contextlib.ExitStack()
    for n in range(998):  # and the two below: 1,000
        others.enter_context(polls.waiting(f"other-{n}", trio.CancelScope(), 25.0))
    async with trio.open_nursery() as agents:
        agents.start_soon(poll, drained, drained_headers, 25)
        agents.start_soon(poll, long, long_headers, 60)
        await trio.testing.wait_all_tasks_blocked()
        assert await pace(drained, drained_headers) == (200.0, False)
        assert await pace(long, long_headers) == (5.0, False)  # as configured: few polls
        # the drain, as if its event were lost: the poll still waits, the heartbeat says it
        await hodei.store.update_worker(
            drained, lambda w: transition_worker(w, WorkerState.DRAINING)
        )
        assert await pace(drained, drained_headers) == (5.0, True)
        agents.cancel_scope.cancel()
    others.close()


async def test_a_lost_worker_that_polls_is_back_online(
    autojump_clock: trio.testing.MockClock,
    hodei: Hodei,
    client: httpx.AsyncClient,
    register: Register,
) -> None:
    worker_id, headers = await register()
    await trio.sleep(2 * _LOST_AFTER_S)  # silent: lost
    assert (await hodei.workers.get(worker_id)).state is WorkerState.LOST
    answer = await client.post(
        f"/api/v1/workers/{worker_id}/poll", params={"wait": 0}, json={}, headers=headers
    )
    assert answer.status_code == 204
    assert (await hodei.workers.get(worker_id)).state is WorkerState.ONLINE
