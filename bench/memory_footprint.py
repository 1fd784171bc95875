"""100,000 finished jobs held by the memory store: resident memory (< 300 MB)."""

from __future__ import annotations

import subprocess
import sys

from ._common import Result, repeat

# Measured in a fresh interpreter, so that nothing else this process loaded counts.
_CHILD = """
import resource, sys, trio
from hodei_backends import MemoryStore
from hodei_core import Job, JobSpec, Outcome, WorkerRegistration, Capacity
from hodei_core import _lifecycle as lifecycle
from hodei_core.ports import Assignment

async def main():
    store = MemoryStore()
    await store.register_worker(
        WorkerRegistration(name="w", capacity=Capacity(slots=1000)), "w1", 0.0, lambda j: j)
    for batch in range(int(sys.argv[1])):  # of 1,000 jobs
        jobs = []
        for i in range(1000):
            spec = JobSpec(command=["echo", f"job {batch}-{i}"], env={"N": str(i)}, name=f"j{i}")
            job = Job(id=f"job-{batch:03d}-{i:04d}-0123456789ab", spec=spec, created_at=1.0)
            await store.add_job(job)
            jobs.append(job)
        await store.assign_jobs([Assignment(j.id, 1, "w1") for j in jobs], 2.0)
        for job in jobs:
            await store.update_job(job.id, lambda j: lifecycle.start(j, 1, "w1", 3.0))
            await store.update_job(job.id, lambda j: lifecycle.finish(j, 1, "w1", Outcome(0), 4.0))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)

trio.run(main)
"""


def run(repeats: int = 3) -> list[Result]:
    """The figures of this benchmark."""

    def once() -> dict[str, float]:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, "100"], check=True, capture_output=True, text=True
        )
        return {"rss": float(out.stdout.strip())}

    values = repeat(repeats, once)
    return [
        Result("memory store: 100,000 finished jobs, peak RSS", values["rss"], "MB", 300, False)
    ]
