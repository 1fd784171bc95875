"""``open_embedded``: the whole engine and a fleet of workers inside one trio program."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager

import trio

from hodei_core import Capacity, Hodei, TenantQuota, WorkerRegistration
from hodei_core.ports import Executor, SchedulingPolicy
from hodei_core.worker import WorkerLoop, WorkerSettings

from ._registry import open_bus, open_store
from ._subprocess import SubprocessExecutor

__all__ = ["open_embedded"]


@asynccontextmanager
async def open_embedded(
    *,
    workers: int = 1,
    policy: SchedulingPolicy | None = None,
    store: str = "memory://",
    bus: str = "memory://",
    labels: Iterable[str] = (),
    slots: int = 1,
    executor: Executor | None = None,
    quotas: Mapping[str, TenantQuota] | None = None,
    clock: Callable[[], float] = time.time,
    lost_after_s: float = 30.0,
    worker_settings: WorkerSettings | None = None,
    name_prefix: str = "embedded",
) -> AsyncIterator[Hodei]:
    """An engine with ``workers`` in-process workers, ready to take jobs; stopped on exit.

    Each worker has ``labels`` and ``slots`` and runs jobs with ``executor`` (default: a
    ``SubprocessExecutor``). Jobs that no worker could ever run fail at once as
    ``unschedulable``, since this fleet is all there is.

    Args:
        workers: how many in-process workers to start (0 for none).
        policy: the scheduling policy (default ``LeastLoaded``).
        store: the store URL, ``memory://`` by default.
        bus: the event bus URL, ``memory://`` by default.
        labels: every worker's labels.
        slots: how many jobs each worker runs at once.
        executor: runs the jobs (``hodei_core.testing.CallableExecutor`` runs Python).
        quotas: per-tenant quotas.
        clock: wall clock for timestamps.
        lost_after_s: silence after which a worker is lost.
        worker_settings: heartbeat, long-poll and log batching settings of the workers.
        name_prefix: workers are named ``<prefix>-1``, ``<prefix>-2``…
    """
    async with open_store(store) as the_store, open_bus(bus) as the_bus:
        hodei = Hodei(
            store=the_store,
            bus=the_bus,
            policy=policy,
            quotas=quotas,
            clock=clock,
            lost_after_s=lost_after_s,
            fail_unschedulable=True,
        )
        run_with = executor if executor is not None else SubprocessExecutor()
        async with hodei.control_plane() as control, trio.open_nursery() as nursery:
            await nursery.start(hodei.run)
            for i in range(1, workers + 1):
                loop = WorkerLoop(
                    control,
                    run_with,
                    WorkerRegistration(
                        name=f"{name_prefix}-{i}",
                        labels=frozenset(labels),
                        capacity=Capacity(slots=slots),
                    ),
                    settings=worker_settings,
                    clock=clock,
                )
                await nursery.start(loop.run)
            yield hodei
            nursery.cancel_scope.cancel()
