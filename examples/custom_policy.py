"""A custom scheduling policy: prefer workers labelled ``fast``, then the least loaded.

Run it with ``python examples/custom_policy.py``.
"""

from collections.abc import Sequence

import trio

from hodei_backends import open_embedded
from hodei_core import Job, JobSpec, WorkerView
from hodei_core.testing import CallableExecutor, check_scheduling_policy


class PreferFast:
    """Any object with ``choose(job, candidates)`` is a policy; candidates already fit."""

    def choose(self, job: Job, candidates: Sequence[WorkerView]) -> WorkerView | None:
        return min(candidates, key=lambda view: ("fast" not in view.worker.labels, view.load))


async def main() -> None:
    check_scheduling_policy(PreferFast())  # raises AssertionError if a rule is broken
    async with open_embedded(
        workers=1, labels=["fast"], executor=CallableExecutor(lambda job: 0)
    ) as hodei:
        job = await hodei.wait((await hodei.submit(JobSpec(command=["true"]))).id)
        print(f"{job.id} ran on {job.worker_id}: {job.state}")


if __name__ == "__main__":
    trio.run(main)
