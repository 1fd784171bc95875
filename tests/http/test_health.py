"""``/readyz`` and ``/metrics`` say how the event bus stands: the server stays ready while the
bus is down (the engine works on by re-reading the store), and says that it is down."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
import trio

from hodei_backends import MemoryEventBus, MemoryStore
from hodei_backends.nats import open_nats_bus
from hodei_core import Hodei, Job, JobSpec, JobState
from hodei_core.errors import StorageError
from hodei_core.ports import EventBus
from hodei_http import create_app

from .._nats_server import NatsServer
from .conftest import ACME, auth, make_settings


class _SwitchableBus(MemoryEventBus):
    """A memory bus that reports the health the test gives it, as a bus over a network would."""

    def __init__(self) -> None:
        super().__init__()
        self.healthy = True


class _BrokenStore(MemoryStore):
    async def get_job(self, job_id: str) -> Job:
        raise StorageError("database is down")


@asynccontextmanager
async def _client_over(hodei: Hodei) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(hodei, make_settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://hodei.test") as client:
        yield client


def _client(
    bus: EventBus, store: MemoryStore | None = None
) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    return _client_over(Hodei(store=store or MemoryStore(), bus=bus))


async def _bus_as_served(client: httpx.AsyncClient) -> tuple[str, str]:
    """What ``/readyz`` and ``/metrics`` say of the bus; ``/readyz`` must be 200 either way."""
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()) == {"status", "bus"}
    assert ready.json()["status"] == "ready"
    metrics = (await client.get("/metrics")).text
    gauge = [line for line in metrics.splitlines() if line.startswith("hodei_bus_up ")]
    assert len(gauge) == 1, metrics
    assert "# TYPE hodei_bus_up gauge" in metrics
    return ready.json()["bus"], gauge[0].split()[1]


async def test_the_memory_bus_is_always_up() -> None:
    async with _client(MemoryEventBus()) as client:
        assert await _bus_as_served(client) == ("up", "1")


async def test_a_bus_that_is_down_leaves_the_server_ready_and_says_so() -> None:
    bus = _SwitchableBus()
    async with _client(bus) as client:
        assert await _bus_as_served(client) == ("up", "1")
        bus.healthy = False
        assert await _bus_as_served(client) == ("down", "0")
        # ready means serving: a submission is stored and queued with the bus down
        response = await client.post("/api/v1/jobs", json={"command": ["true"]}, headers=auth(ACME))
        assert response.status_code == 202, response.text
        assert response.json()["state"] == JobState.QUEUED.value
        bus.healthy = True
        assert await _bus_as_served(client) == ("up", "1")


async def test_the_store_alone_decides_readiness() -> None:
    bus = _SwitchableBus()
    async with _client(bus, _BrokenStore()) as client:
        for healthy in (True, False):
            bus.healthy = healthy
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "not_ready"


# -- a real NATS server stopped and started again -----------------------------------------------


async def _wait_until_served(client: httpx.AsyncClient, expected: tuple[str, str]) -> None:
    # The connection's state changes in the NATS thread on news from another process: nothing
    # to await, so the served answer is asked for again until it changes, boundedly.
    with trio.fail_after(10):
        while await _bus_as_served(client) != expected:  # noqa: ASYNC110 - see above
            await trio.sleep(0.02)


@pytest.mark.slow
async def test_nats_stopped_and_started_again_shows_in_readyz_and_metrics(
    own_nats_server: NatsServer,
) -> None:
    # the engine's loops stop (nursery) before the bus closes (open_nats_bus)
    async with (
        open_nats_bus(own_nats_server.url, reconnect_wait_s=0.05) as bus,
        trio.open_nursery() as nursery,
    ):
        hodei = Hodei(store=MemoryStore(), bus=bus)
        await nursery.start(hodei.run)
        async with _client_over(hodei) as client:
            assert await _bus_as_served(client) == ("up", "1")
            own_nats_server.kill()
            await _wait_until_served(client, ("down", "0"))
            # the engine takes work meanwhile: the job is stored, its event dropped, not raised
            job = await hodei.submit(JobSpec(command=["true"]))
            assert (await hodei.get(job.id)).state is JobState.QUEUED
            await trio.to_thread.run_sync(own_nats_server.start)
            await _wait_until_served(client, ("up", "1"))
        nursery.cancel_scope.cancel()
