"""The long-poll's safety net: a job whose ``JobAssigned`` the bus lost still reaches the
worker's waiting poll, within ``RECHECK_S``, without each poll reading the store on a timer."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest
import trio
import trio.testing
from starlette.applications import Starlette

from hodei_backends import MemoryEventBus, MemoryStore
from hodei_core import Hodei, JobSpec
from hodei_core.events import Event, JobAssigned, JobCancelRequested
from hodei_http import ServerSettings, create_app
from hodei_http._polls import RECHECK_S

from .conftest import AGENT, Register, auth


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


class _CountingStore(MemoryStore):
    """A memory store that counts reads of worker records and of a worker's jobs."""

    def __init__(self) -> None:
        super().__init__()
        self.worker_reads = 0
        self.jobs_reads = 0

    async def get_worker(self, worker_id: str):  # type: ignore[no-untyped-def]
        self.worker_reads += 1
        return await super().get_worker(worker_id)

    async def active_jobs(self, worker_id: str):  # type: ignore[no-untyped-def]
        self.jobs_reads += 1
        return await super().active_jobs(worker_id)


@contextlib.asynccontextmanager
async def _worker_of(
    engine: Hodei, settings: ServerSettings
) -> AsyncIterator[tuple[httpx.AsyncClient, _Polls]]:
    """A client of an app serving ``engine``, and the polls of a worker registered on it."""
    app = create_app(engine, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hodei.test") as client:
        registered = await client.post("/api/v1/workers", json={"name": "w"}, headers=auth(AGENT))
        worker_id = registered.json()["worker"]["id"]
        yield client, _Polls(client, worker_id, auth(registered.json()["token"]), app)


class _Polls:
    """One worker's long-polls, and their answers."""

    def __init__(
        self, client: httpx.AsyncClient, worker_id: str, headers: dict[str, str], app: Starlette
    ) -> None:
        self.client, self.worker_id, self.headers, self.app = client, worker_id, headers, app
        self.answers: list[httpx.Response] = []

    async def poll(self, wait: float, running: Sequence[str] = ()) -> httpx.Response:
        body = {"running": [{"job_id": job_id, "attempt": 1} for job_id in running]}
        answer = await self.client.post(
            f"/api/v1/workers/{self.worker_id}/poll",
            params={"wait": wait},
            json=body,
            headers=self.headers,
        )
        self.answers.append(answer)
        return answer


async def test_a_poll_woken_by_an_assignment_does_not_read_its_worker_again(
    nursery: trio.Nursery,
    settings: ServerSettings,
) -> None:
    # the worker's record says only whether to drain, which no assignment changes; a drain
    # (another event) has it read again
    store = _CountingStore()
    engine = Hodei(store=store, bus=MemoryEventBus(), quotas=settings.quotas)
    await nursery.start(engine.run)
    async with _worker_of(engine, settings) as (_, worker):
        async with trio.open_nursery() as polls:
            polls.start_soon(worker.poll, 5)
            await trio.testing.wait_all_tasks_blocked()
            reads, jobs_reads = store.worker_reads, store.jobs_reads
            job = await engine.submit(JobSpec(command=["true"]), tenant="acme")
        assert [job["id"] for job in worker.answers[-1].json()["jobs"]] == [job.id]
        assert store.worker_reads == reads  # the assignment woke it: no read of the worker
        # nor of its jobs: the job is answered as the scheduler left it at hand
        assert store.jobs_reads == jobs_reads

        async with trio.open_nursery() as polls:
            polls.start_soon(worker.poll, 5, [job.id])
            await trio.testing.wait_all_tasks_blocked()
            reads = store.worker_reads
            await engine.drain_worker(worker.worker_id)
        assert worker.answers[-1].json()["drain"] is True
        assert store.worker_reads > reads  # a drain is news about the worker itself


async def test_a_poll_woken_by_another_engines_assignment_reads_the_workers_jobs(
    nursery: trio.Nursery,
    settings: ServerSettings,
) -> None:
    store, bus = _CountingStore(), MemoryEventBus()
    served = Hodei(store=store, bus=bus, quotas=settings.quotas)  # schedules nothing itself
    other = Hodei(store=store, bus=bus, quotas=settings.quotas)
    await nursery.start(other.run)
    async with _worker_of(served, settings) as (_, worker):
        async with trio.open_nursery() as polls:
            polls.start_soon(worker.poll, 5)
            await trio.testing.wait_all_tasks_blocked()
            jobs_reads = store.jobs_reads
            job = await other.submit(JobSpec(command=["true"]), tenant="acme")
        assert [job["id"] for job in worker.answers[-1].json()["jobs"]] == [job.id]
        # the served engine's scheduler left nothing at hand: what the store says
        assert store.jobs_reads == jobs_reads + 1


class _LosesCancels(MemoryEventBus):
    """A bus that loses every ``JobCancelRequested``."""

    async def publish(self, event: Event) -> None:
        if not isinstance(event, JobCancelRequested):
            await super().publish(event)


async def test_a_cancel_the_bus_did_not_announce_reaches_the_waiting_poll(
    autojump_clock: trio.testing.MockClock,
    nursery: trio.Nursery,
    settings: ServerSettings,
) -> None:
    # the worker's heartbeats may be minutes apart (its poll speaks for it): the sweep also
    # wakes the polls of workers with a job to stop
    engine = Hodei(store=MemoryStore(), bus=_LosesCancels(), quotas=settings.quotas)
    await nursery.start(engine.run)
    async with _worker_of(engine, settings) as (client, worker):
        await nursery.start(worker.app.state.api.polls.sweep, engine)
        job = await engine.submit(JobSpec(command=["true"]), tenant="acme")
        assert [j["id"] for j in (await worker.poll(5)).json()["jobs"]] == [job.id]
        started = await client.post(
            f"/api/v1/jobs/{job.id}/start", json={"attempt": 1}, headers=worker.headers
        )
        assert started.status_code == 200
        async with trio.open_nursery() as polls:
            polls.start_soon(worker.poll, 25, [job.id])
            await trio.testing.wait_all_tasks_blocked()
            asked = trio.current_time()
            await engine.cancel(job.id)
        assert worker.answers[-1].json()["cancel"] == [{"job_id": job.id, "attempt": 1}]
        assert trio.current_time() - asked <= RECHECK_S + 0.1
