"""Full job life on durable stores, 20 in-process workers, one small log chunk per job.

Targets: >= 2,000 jobs/s on a SQLite file and >= 1,500 on PostgreSQL (the test suite's
embedded server, ``tests/_postgres_server.py``, with its settings: fsync, synchronous_commit and
full_page_writes off); the ratio to the memory store on the same run shows what durability
costs. Also: log ingestion into SQLite from 10 concurrent jobs of 4 KiB chunks (>= 50 MB/s).
"""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from hodei_backends import open_embedded, open_store
from hodei_core import Job, JobSpec, JobState, LogChunk, Stream
from hodei_core.ports import JobQuery, LogSink

from ._common import Result, repeat

if TYPE_CHECKING:
    from tests._postgres_server import PostgresServer

JOBS = 4_000
WORKERS = 20
SLOTS = 4
SUBMITTERS = 10
_LIVE = frozenset(s for s in JobState if not s.is_terminal)


class _OneChunk:
    """An executor that writes one small line and ends at once."""

    async def run(self, job: Job, logs: LogSink) -> int:
        await logs.write(Stream.STDOUT, "ok\n")
        return 0


async def _life(store: str) -> float:
    async with open_embedded(
        store=store, workers=WORKERS, slots=SLOTS, executor=_OneChunk()
    ) as hodei:
        spec = JobSpec(command=["true"])
        ids: list[str] = []

        async def submit(n: int) -> None:
            for _ in range(n):
                ids.append((await hodei.submit(spec)).id)

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(SUBMITTERS):
                nursery.start_soon(submit, JOBS // SUBMITTERS)
        # one read for all that ended, rather than one ``wait`` (a store round trip) per job
        while live := await hodei.store.list_jobs(JobQuery(states=_LIVE, limit=1)):
            await hodei.wait(live[0].id)
        return len(ids) / (time.perf_counter() - t0)


async def _ingest(store: str) -> float:
    chunk = "x" * 4095 + "\n"
    per_job = 2_000  # 8 MB per job, 80 MB in all
    async with open_store(store) as the_store:

        async def job(n: int) -> None:
            for first in range(0, per_job, 16):  # 64 KiB per call, as the worker loop sends
                batch = [LogChunk(seq, Stream.STDOUT, chunk) for seq in range(first, first + 16)]
                await the_store.append_logs(f"job-{n}", 1, batch)

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for n in range(10):
                nursery.start_soon(job, n)
        return 10 * per_job * len(chunk) / (time.perf_counter() - t0) / 1e6


def run(repeats: int = 3) -> list[Result]:
    """The figures of this benchmark."""
    # the tests' server, started once: a benchmark of the store, not of initdb
    from tests._postgres_server import running_postgres  # noqa: PLC0415

    def once(postgres: PostgresServer) -> dict[str, float]:
        with tempfile.TemporaryDirectory() as tmp:
            gc.collect()
            sqlite = trio.run(_life, f"sqlite:///{Path(tmp) / 'life.db'}")
            gc.collect()
            memory = trio.run(_life, "memory://")
            gc.collect()
            pg = trio.run(_life, postgres.own_database())
            gc.collect()
            ingest = trio.run(_ingest, f"sqlite:///{Path(tmp) / 'logs.db'}")
        return {
            "sqlite": sqlite,
            "postgres": pg,
            "memory": memory,
            "ratio": memory / sqlite,
            "pg_ratio": memory / pg,
            "ingest": ingest,
        }

    with running_postgres() as postgres:
        values = repeat(repeats, lambda: once(postgres))
    return [
        Result("sqlite file: full job life, 20 workers", values["sqlite"], "jobs/s", 2_000, True),
        Result("postgresql: the same run", values["postgres"], "jobs/s", 1_500, True),
        Result("memory, same run", values["memory"], "jobs/s", None, True),
        Result("memory / sqlite (cost of durability)", values["ratio"], "x", None, False),
        Result("memory / postgresql", values["pg_ratio"], "x", None, False),
        Result("sqlite: log ingestion, 10 jobs x 4 KiB", values["ingest"], "MB/s", 50, True),
    ]
