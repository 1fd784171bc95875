"""One of the processes of the cross-process assignment test (``test_sql_store.py``).

Run as ``python _sql_assign_process.py URL SEED``: opens the SQL store at URL, prints
``ready`` and waits for a line on its standard input (so that both processes start together);
then, until no worker has room or no job is queued, proposes the head of the queue to random
workers, ignoring capacity (keeping it is the store's job). Prints the assignments the store
carried out, as JSON ``[[job_id, attempt, worker_id], …]``.
"""

from __future__ import annotations

import json
import random
import sys

import trio

from hodei_backends.sql import open_sql_store
from hodei_core.ports import Assignment

BATCH = 8


async def main(url: str, seed: int) -> None:
    """Assign until the fleet is full; print what this process assigned."""
    rng = random.Random(seed)
    assigned: list[list[object]] = []
    async with open_sql_store(url, pool_size=2) as store:
        worker_ids = [worker.id for worker in await store.list_workers()]
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        while await store.worker_views(with_room=True):
            queued = await store.queued_jobs(BATCH)
            if not queued:
                break
            batch = [Assignment(job.id, job.attempt, rng.choice(worker_ids)) for job in queued]
            for job in await store.assign_jobs(batch, now=float(seed)):
                assigned.append([job.id, job.attempt, job.worker_id])
    print(json.dumps(assigned))


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
