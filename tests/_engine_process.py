"""One engine process of the multi-process tests (``test_two_engines.py``).

Run as ``python _engine_process.py SETTINGS_JSON`` (an ``EngineSettings`` as JSON): opens
``open_embedded`` on the given store and bus with its own named workers, prints ``ready`` once
they are registered and waits for a line on its standard input, so that the test starts every
process together. It then submits its share of jobs, prints ``submitted``, and keeps working
until a second line (or the end of its input) tells it to stop; it prints ``stopped`` once the
engine is closed.

Everything it sees is appended to ``records`` as JSON lines, one ``write`` per line, so that
what was written before a ``kill -9`` is still there afterwards:

- ``{"e": "accepted", "job": id}`` once ``submit`` returned (the job is stored);
- ``{"e": "start", "job": id, "attempt": n, "worker": worker_id, "load": k}`` when a job
  attempt starts running, ``load`` being how many attempts that worker runs now, this one
  included (a worker lives in one process, so this count is exact);
- ``{"e": "end", "job": id, "attempt": n, "worker": worker_id}`` when it is done, just before
  the worker reports it.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import IO

import attrs
import trio

from hodei_backends import open_embedded
from hodei_core import Hodei, Job, JobSpec
from hodei_core.testing import CallableExecutor
from hodei_core.worker import WorkerSettings


@attrs.frozen(kw_only=True)
class EngineSettings:
    """What one engine process does; the test builds it, the process reads it back."""

    store: str
    bus: str
    records: str  # where the JSON lines go
    name_prefix: str  # workers are <prefix>-1…: distinct per engine, the same on a restart
    workers: int = 10
    slots: int = 4
    submit: int = 0  # how many jobs this process submits
    submitters: int = 8  # at once: concurrent submissions share the store's transactions
    retries_every: int = 0  # every n-th job gets one retry (0: none does)
    job_s: float = 0.002  # how long each job runs
    lost_after_s: float = 30.0
    heartbeat_interval_s: float = 1.0

    def to_json(self) -> str:
        """The settings as one command-line argument."""
        return json.dumps(attrs.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> EngineSettings:
        """The settings the test passed."""
        return cls(**json.loads(text))


class Recorder:
    """Runs the jobs and writes down what happened, line by line."""

    def __init__(self, settings: EngineSettings, out: IO[str]) -> None:
        self._settings = settings
        self._out = out
        self._load: Counter[str] = Counter()

    def record(self, **fields: object) -> None:
        """One JSON line; the file is line-buffered, so each line is one ``write``."""
        self._out.write(json.dumps(fields) + "\n")

    async def run(self, job: Job) -> int:
        """The job itself: count the worker's load, take a little time, succeed."""
        assert job.worker_id is not None
        worker = job.worker_id
        self._load[worker] += 1
        try:
            load = self._load[worker]
            self.record(e="start", job=job.id, attempt=job.attempt, worker=worker, load=load)
            await trio.sleep(self._settings.job_s)
            self.record(e="end", job=job.id, attempt=job.attempt, worker=worker)
        finally:
            self._load[worker] -= 1
        return 0


async def _submit(hodei: Hodei, recorder: Recorder, settings: EngineSettings) -> None:
    """Submit ``settings.submit`` jobs from ``settings.submitters`` tasks."""
    numbers = iter(range(settings.submit))

    async def submitter() -> None:
        for i in numbers:  # shared: each number is taken by one task
            every = settings.retries_every
            retries = 1 if every and i % every == 0 else 0
            spec = JobSpec(command=["noop"], retries=retries, name=f"{settings.name_prefix}{i}")
            job = await hodei.submit(spec)
            recorder.record(e="accepted", job=job.id)

    async with trio.open_nursery() as nursery:
        for _ in range(settings.submitters):
            nursery.start_soon(submitter)


async def _next_line() -> None:
    # Abandoned on cancel, so that an engine that crashes says so at once rather than once
    # the test writes its next line.
    await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)


async def main(settings: EngineSettings) -> None:
    """Run the engine until told to stop."""
    # Plain blocking writes: each line is short, and once written it is the kernel's, so a
    # kill -9 cannot lose it (an async file would hold it in a thread's queue).
    with open(settings.records, "a", buffering=1, encoding="utf-8") as out:
        recorder = Recorder(settings, out)
        async with open_embedded(
            store=settings.store,
            bus=settings.bus,
            workers=settings.workers,
            slots=settings.slots,
            executor=CallableExecutor(recorder.run),
            lost_after_s=settings.lost_after_s,
            worker_settings=WorkerSettings(heartbeat_interval_s=settings.heartbeat_interval_s),
            name_prefix=settings.name_prefix,
        ) as hodei:
            print("ready", flush=True)
            await _next_line()
            await _submit(hodei, recorder, settings)
            print("submitted", flush=True)
            # The jobs of every engine may land on this one's workers: keep serving until the
            # test has seen them all finish.
            await _next_line()
    print("stopped", flush=True)


if __name__ == "__main__":
    trio.run(main, EngineSettings.from_json(sys.argv[1]))
