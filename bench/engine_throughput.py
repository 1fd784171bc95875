"""Embedded engine, memory backends, 100 in-process workers, jobs that end at once.

Measures jobs per second through the whole life (submit → assign → start → finish) and the
latency from submit to start. Targets: >= 10,000 jobs/s; p99 submit-to-start < 5 ms.
"""

from __future__ import annotations

import gc
import time

import trio
import trio.lowlevel

from hodei_backends import open_embedded
from hodei_core import Job, JobSpec
from hodei_core.testing import CallableExecutor

from ._common import Result, percentile, repeat

JOBS = 20_000
WORKERS = 100
SLOTS = 4
# Submitters keep this many jobs in flight, as a busy server's clients would.
IN_FLIGHT = 400


async def _measure() -> dict[str, float]:
    started_at: dict[str, float] = {}

    def start(job: Job) -> int:
        started_at[job.id] = time.perf_counter()
        return 0

    submitted_at: dict[str, float] = {}
    async with open_embedded(
        workers=WORKERS, slots=SLOTS, executor=CallableExecutor(start)
    ) as hodei:
        spec = JobSpec(command=["true"])
        limiter = trio.Semaphore(IN_FLIGHT)
        done = trio.Event()
        finished = 0

        async def watch() -> None:
            nonlocal finished
            async with hodei.bus.subscribe("jobs.*.*.finished") as events:
                async for _ in events:
                    finished += 1
                    limiter.release()
                    if finished == JOBS:
                        done.set()
                        return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await trio.lowlevel.checkpoint()
            t0 = time.perf_counter()
            for _ in range(JOBS):
                await limiter.acquire()
                now = time.perf_counter()
                job = await hodei.submit(spec)
                submitted_at[job.id] = now
            await done.wait()
            elapsed = time.perf_counter() - t0
    latencies = [(started_at[i] - submitted_at[i]) * 1000 for i in submitted_at]
    return {
        "rate": JOBS / elapsed,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
    }


def run(repeats: int = 3) -> list[Result]:
    """The figures of this benchmark."""

    def once() -> dict[str, float]:
        gc.collect()
        return trio.run(_measure)

    values = repeat(repeats, once)
    return [
        Result("embedded: full job life, 100 workers", values["rate"], "jobs/s", 10_000, True),
        Result("embedded: submit -> start p50", values["p50"], "ms", 5, False),
        Result("embedded: submit -> start p99", values["p99"], "ms", 5, False),
    ]
