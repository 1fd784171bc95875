"""The long-poll's safety net: a job whose ``JobAssigned`` the bus lost still reaches the
worker's waiting poll, within ``RECHECK_S``, without each poll reading the store on a timer."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing
from starlette.applications import Starlette

from hodei_backends import MemoryEventBus, MemoryStore
from hodei_core import Hodei
from hodei_core.events import Event, JobAssigned
from hodei_http import ServerSettings
from hodei_http._polls import RECHECK_S

from .conftest import Register


class _LosesAssignments(MemoryEventBus):
    """A bus that loses every ``JobAssigned``, as one that is down would."""

    async def publish(self, event: Event) -> None:
        if not isinstance(event, JobAssigned):
            await super().publish(event)


@pytest.fixture
async def hodei(nursery: trio.Nursery, settings: ServerSettings) -> Hodei:
    """An engine whose bus never announces an assignment."""
    engine = Hodei(store=MemoryStore(), bus=_LosesAssignments(), quotas=settings.quotas)
    await nursery.start(engine.run)
    return engine


async def test_a_job_the_bus_did_not_announce_reaches_the_waiting_poll(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    app: Starlette,
    hodei: Hodei,
    client: httpx.AsyncClient,
    acme: httpx.AsyncClient,
    register: Register,
) -> None:
    # a served app runs the sweep in its lifespan, which the test transport does not run
    await nursery.start(app.state.api.polls.sweep, hodei)
    worker_id, headers = await register()
    answered = trio.Event()
    answers: list[httpx.Response] = []

    async def poll() -> None:
        answers.append(
            await client.post(
                f"/api/v1/workers/{worker_id}/poll", params={"wait": 25}, json={}, headers=headers
            )
        )
        answered.set()

    nursery.start_soon(poll)
    await trio.testing.wait_all_tasks_blocked()  # the poll waits now
    start = trio.current_time()
    submitted = await acme.post("/api/v1/jobs", json={"script": "true"})
    assert submitted.status_code == 202, submitted.text
    await answered.wait()
    # without the sweep, the poll would have slept its 25 s and answered 204
    assert trio.current_time() - start <= RECHECK_S + 0.5
    (answer,) = answers
    assert answer.status_code == 200, answer.text
    assert [job["id"] for job in answer.json()["jobs"]] == [submitted.json()["id"]]
