"""The engine's loops outlive a failing store: a scheduling pass or a look for lost workers
that meets a ``StorageError`` (a database restarting, a deadlock met too often) is logged and
tried again, and the engine goes on once the store answers."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from hodei_backends import MemoryEventBus, MemoryStore
from hodei_core import Capacity, Hodei, JobSpec, JobState, WorkerRegistration, WorkerState
from hodei_core.errors import StorageError


class _FlakyStore(MemoryStore):
    """A memory store whose ``assign_jobs`` and ``list_workers`` fail their first calls."""

    def __init__(self, *, assign_failures: int = 0, list_failures: int = 0) -> None:
        super().__init__()
        self.assign_failures = assign_failures
        self.list_failures = list_failures

    async def assign_jobs(self, assignments, now):  # type: ignore[no-untyped-def]
        if self.assign_failures:
            self.assign_failures -= 1
            raise StorageError("assign_jobs: the database restarts")
        return await super().assign_jobs(assignments, now)

    async def list_workers(self):  # type: ignore[no-untyped-def]
        if self.list_failures:
            self.list_failures -= 1
            raise StorageError("list_workers: the database restarts")
        return await super().list_workers()


async def test_a_pass_that_fails_on_the_store_is_tried_again(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = _FlakyStore(assign_failures=3)
    hodei = Hodei(store=store, bus=MemoryEventBus(), clock=trio.current_time)
    async with trio.open_nursery() as nursery:
        await nursery.start(hodei.run)
        await hodei.workers.register(WorkerRegistration(name="w", capacity=Capacity(slots=1)))
        job = await hodei.submit(JobSpec(command=["true"]))
        # three passes fail; the pauses between them (0.05, 0.1, 0.2 s) end well within this
        await trio.sleep(1)
        assert store.assign_failures == 0
        assert (await hodei.get(job.id)).state is JobState.ASSIGNED
        nursery.cancel_scope.cancel()
    failed = [r for r in caplog.records if "a scheduling pass failed" in r.getMessage()]
    assert len(failed) == 3 and all(r.levelno == logging.WARNING for r in failed)
    assert "the database restarts" in failed[0].getMessage()


async def test_a_look_for_lost_workers_that_fails_is_tried_again(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = _FlakyStore(list_failures=2)
    hodei = Hodei(store=store, bus=MemoryEventBus(), clock=trio.current_time, lost_after_s=8)
    async with trio.open_nursery() as nursery:
        await nursery.start(hodei.run)
        worker, _ = await hodei.workers.register(WorkerRegistration(name="w"))
        # silent from now on: the first two looks (at 2 s and 4 s) fail, later ones find it
        await trio.sleep(20)
        assert store.list_failures == 0
        assert (await store.get_worker(worker.id)).state is WorkerState.LOST
        nursery.cancel_scope.cancel()
    failed = [r for r in caplog.records if "looking for lost workers failed" in r.getMessage()]
    assert len(failed) == 2


async def test_a_failing_store_is_asked_for_lost_workers_at_the_slow_pace(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = _FlakyStore(list_failures=1_000)
    hodei = Hodei(store=store, bus=MemoryEventBus(), clock=trio.current_time, lost_after_s=8)
    async with trio.open_nursery() as nursery:
        await nursery.start(hodei.run)
        await hodei.workers.register(WorkerRegistration(name="w"))
        await trio.sleep(20)
        nursery.cancel_scope.cancel()
    failed = [r for r in caplog.records if "looking for lost workers failed" in r.getMessage()]
    # every lost_after_s / 4 (2 s), not at the floor of lost_after_s / 20 kept for live fleets
    assert 9 <= len(failed) <= 10
