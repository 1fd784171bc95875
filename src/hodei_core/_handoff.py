"""Jobs just assigned by this process's scheduler, for this process's polls to take as they are.

A worker's poll wakes on ``JobAssigned``, which names the job but does not carry it: the poll
would read the store for a job the scheduler had in hand a moment before. The scheduler leaves
each job it assigned here, and a poll that is woken by assignments only takes them from here.
It is a cache, never the truth: an assignment made by another process, or one pushed out by
newer ones, is not here, and the poll reads the store as before.
"""

from __future__ import annotations

from ._models import Job

__all__ = ["Handoff"]


class Handoff:
    """The last ``limit`` jobs assigned in this process, until a poll takes them."""

    __slots__ = ("_jobs", "_limit")

    def __init__(self, limit: int = 4096) -> None:
        self._jobs: dict[tuple[str, int], Job] = {}
        self._limit = limit

    def put(self, job: Job) -> None:
        """Leave ``job``, as it was just assigned, for the poll of its worker."""
        jobs = self._jobs
        jobs[job.id, job.attempt] = job
        if len(jobs) > self._limit:
            # the oldest: its worker polls elsewhere (another process), or is gone
            del jobs[next(iter(jobs))]

    def take(self, job_id: str, attempt: int) -> Job | None:
        """The job that attempt was assigned as, if it is still here (and no longer after)."""
        return self._jobs.pop((job_id, attempt), None)

    def __len__(self) -> int:
        return len(self._jobs)
