"""Embedded engine, memory backends, 100 in-process workers, jobs that end at once.

Two measurements, each in a fresh engine:

- throughput: 20,000 jobs submitted at once, timed until the last has finished (submit →
  assign → start → finish); target >= 10,000 jobs/s;
- latency: submit → start while clients keep 100 jobs in flight (a quarter of the fleet's
  400 slots); target p99 < 5 ms.
"""

from __future__ import annotations

import gc
import time

import trio

from hodei_backends import open_embedded
from hodei_core import Job, JobSpec, JobState
from hodei_core.ports import JobQuery
from hodei_core.testing import CallableExecutor

from ._common import Result, percentile, repeat

WORKERS = 100
SLOTS = 4
BURST = 20_000
LATENCY_JOBS = 10_000
IN_FLIGHT = 100
_LIVE = frozenset(s for s in JobState if not s.is_terminal)


async def _throughput() -> float:
    async with open_embedded(
        workers=WORKERS, slots=SLOTS, executor=CallableExecutor(lambda job: 0)
    ) as hodei:
        spec = JobSpec(command=["true"])
        t0 = time.perf_counter()
        ids = [(await hodei.submit(spec)).id for _ in range(BURST)]
        await hodei.wait(ids[-1])
        # jobs run roughly in order; wait for any that the last one overtook
        for job in await hodei.store.list_jobs(JobQuery(states=_LIVE, limit=BURST)):
            await hodei.wait(job.id)
        return BURST / (time.perf_counter() - t0)


async def _latency() -> tuple[float, float]:
    started_at: dict[str, float] = {}

    def start(job: Job) -> int:
        started_at[job.id] = time.perf_counter()
        return 0

    submitted_at: dict[str, float] = {}
    async with open_embedded(
        workers=WORKERS, slots=SLOTS, executor=CallableExecutor(start)
    ) as hodei:
        spec = JobSpec(command=["true"])
        in_flight = trio.Semaphore(IN_FLIGHT)
        done = trio.Event()
        finished = 0

        async def watch(task_status: trio.TaskStatus[None]) -> None:
            nonlocal finished
            async with hodei.bus.subscribe("jobs.*.*.finished") as events:
                task_status.started()
                async for _ in events:
                    finished += 1
                    in_flight.release()
                    if finished == LATENCY_JOBS:
                        done.set()
                        return

        async with trio.open_nursery() as nursery:
            await nursery.start(watch)
            for _ in range(LATENCY_JOBS):
                await in_flight.acquire()
                now = time.perf_counter()
                job = await hodei.submit(spec)
                submitted_at[job.id] = now
            await done.wait()
    latencies = [(started_at[i] - submitted_at[i]) * 1000 for i in submitted_at]
    return percentile(latencies, 50), percentile(latencies, 99)


def run(repeats: int = 5) -> list[Result]:
    """The figures of this benchmark."""

    def once() -> dict[str, float]:
        gc.collect()
        rate = trio.run(_throughput)
        gc.collect()
        p50, p99 = trio.run(_latency)
        return {"rate": rate, "p50": p50, "p99": p99}

    values = repeat(repeats, once)
    return [
        Result("embedded: full job life, 100 workers", values["rate"], "jobs/s", 10_000, True),
        Result("embedded: submit -> start p50", values["p50"], "ms", 5, False),
        Result("embedded: submit -> start p99", values["p99"], "ms", 5, False),
    ]
