"""What a scheduling pass reads: the store calls between a submit and its assignment are the
dispatch latency on a SQL store, where each costs a round trip to its thread."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from hodei_backends import MemoryEventBus, MemoryStore
from hodei_core import Capacity, Hodei, JobSpec, JobState, WorkerRegistration
from hodei_core.errors import StorageError

TRUE = JobSpec(command=["true"])


class _CountingStore(MemoryStore):
    """A memory store that notes the limit of each ``queued_jobs`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.queue_reads: list[int] = []

    async def queued_jobs(self, limit: int):  # type: ignore[no-untyped-def]
        self.queue_reads.append(limit)
        return await super().queued_jobs(limit)


async def _settled(hodei: Hodei, job_id: str) -> JobState:
    await trio.testing.wait_all_tasks_blocked()
    return (await hodei.get(job_id)).state


@asynccontextmanager
async def _running(store: _CountingStore, slots: int = 1) -> AsyncIterator[Hodei]:
    """An engine on ``store``, its loops running, with one worker of ``slots`` registered."""
    hodei = Hodei(store=store, bus=MemoryEventBus(), clock=trio.current_time)
    async with trio.open_nursery() as nursery:
        await nursery.start(hodei.run)
        await hodei.workers.register(WorkerRegistration(name="w", capacity=Capacity(slots=slots)))
        yield hodei
        nursery.cancel_scope.cancel()


async def test_a_pass_after_a_submit_does_not_ask_whether_the_queue_is_empty(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = _CountingStore()
    async with _running(store) as hodei:
        await trio.sleep(5)  # passes at rest ask, and find the queue empty
        assert store.queue_reads and set(store.queue_reads) == {1}
        store.queue_reads.clear()
        job = await hodei.submit(TRUE)
        assert await _settled(hodei, job.id) is JobState.ASSIGNED
        # one read of the queue, the window the free slot calls for: no probe first
        assert len(store.queue_reads) == 1 and store.queue_reads[0] > 1
        store.queue_reads.clear()
        await trio.sleep(1.5)  # the next pass at rest asks again: nothing was queued since
        assert store.queue_reads == [1]


async def test_on_a_full_fleet_a_pass_does_not_read_the_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = _CountingStore()
    async with _running(store, slots=1) as hodei:
        first = await hodei.submit(TRUE)
        assert await _settled(hodei, first.id) is JobState.ASSIGNED
        # the pass that finds the fleet full had read the queue alongside the workers...
        second = await hodei.submit(TRUE)
        assert await _settled(hodei, second.id) is JobState.QUEUED
        store.queue_reads.clear()
        # ...but the next one knows there was no room, and reads only the workers
        third = await hodei.submit(TRUE)
        assert await _settled(hodei, third.id) is JobState.QUEUED
        assert store.queue_reads == []


class _BrokenWorkers(MemoryStore):
    async def worker_views(self, *, with_room: bool = False):  # type: ignore[no-untyped-def]
        raise StorageError("the database is gone")


async def test_a_store_error_in_a_side_by_side_read_comes_out_as_itself() -> None:
    store = _BrokenWorkers()
    hodei = Hodei(store=store, bus=MemoryEventBus())
    await hodei.submit(TRUE)
    with pytest.raises(StorageError, match="the database is gone"):
        await hodei.scheduler.schedule_once(job_queued=True)
