"""Embedding Hodei in a trio program: a small fan-out of shell jobs, then their logs.

Run it with ``python examples/embed.py``.
"""

import trio

from hodei_backends import open_embedded
from hodei_core import JobSpec, JobState
from hodei_core.policies import LeastLoaded


async def main() -> None:
    async with open_embedded(workers=2, slots=2, policy=LeastLoaded()) as hodei:
        jobs = [
            await hodei.submit(JobSpec(script=f"echo part {n}; sleep 0.1", name=f"part-{n}"))
            for n in range(4)
        ]
        for job in jobs:
            done = await hodei.wait(job.id)
            output = (await hodei.log_text(job.id)).strip()
            print(f"{done.name}: {done.state} on {done.worker_id} -> {output!r}")
            assert done.state is JobState.SUCCEEDED


if __name__ == "__main__":
    trio.run(main)
