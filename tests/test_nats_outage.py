"""NATS stopped and started again in the middle of a run between two engine processes: the run
still finishes, no job is lost, none runs twice.

The engines are real processes (``_engine_process.py``, the harness of ``test_two_engines.py``)
on one SQLite file, with NATS between them: each has its own workers running Python jobs that
note every attempt they run. While NATS is down their events are dropped, and the engines work
on by reading the store (the scheduler's safety-net pass, the workers' re-reads); when it is
back they reconnect by themselves and events flow again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import trio

from hodei_backends import open_store
from hodei_backends.nats import open_nats_bus
from hodei_core import JobState
from hodei_core.events import JobFinished
from hodei_core.ports import Store

from ._engine_process import EngineSettings
from ._engines import (
    UNFINISHED,
    CapacityWatch,
    all_jobs,
    check_capacity,
    check_each_ran_once,
    count_jobs,
    engine_process,
    poll_until,
    wait_until_all_finished,
)
from ._nats_server import NatsServer, free_port

pytestmark = pytest.mark.slow

ENGINES = ("a", "b")
JOBS_EACH = 150
WORKERS, SLOTS = 3, 2  # per engine: 12 slots in all
# Long enough that a run takes seconds even with the bus up, so that the outage and the
# reconnection both fall in its middle with a wide margin on a slow machine.
JOB_S = 0.1
BEFORE_OUTAGE = 30  # jobs that end before NATS is stopped
DURING_OUTAGE = 30  # and that end while it is down, found by reading the store
SUCCEEDED = frozenset({JobState.SUCCEEDED})


class _MonitoredNatsServer(NatsServer):
    """A nats-server with its monitoring endpoint on, to tell who is connected."""

    def __init__(self, store_dir: Path) -> None:
        monitor_port = free_port()
        super().__init__(store_dir, extra_args=("-m", str(monitor_port)))
        self.monitor_url = f"http://127.0.0.1:{monitor_port}"

    async def clients(self) -> int:
        """How many clients it has now."""
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{self.monitor_url}/connz")
        response.raise_for_status()
        connections: int = response.json()["num_connections"]
        return connections


@pytest.fixture
def own_nats_server(tmp_path: Path) -> Iterator[_MonitoredNatsServer]:
    """A nats-server of this test's own, which it kills and restarts."""
    server = _MonitoredNatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.kill()


def _ended_at_least(store: Store, n: int) -> Callable[[], Awaitable[bool]]:
    async def condition() -> bool:
        return await count_jobs(store, SUCCEEDED, n) >= n

    return condition


async def test_nats_stopped_and_restarted_mid_run_loses_no_job_and_runs_none_twice(
    own_nats_server: _MonitoredNatsServer, tmp_path: Path
) -> None:
    """Two engines submit 150 jobs each and run them on their 12 slots; NATS is killed once
    some have ended, and started again once more have ended without it, while most are still
    to run. Every job ends succeeded at its first attempt, and every attempt ran once."""
    nats = own_nats_server
    database = f"sqlite:///{tmp_path / 'hodei.db'}"
    settings = [
        EngineSettings(
            store=database,
            bus=nats.url,
            records=str(tmp_path / f"{name}.jsonl"),
            name_prefix=name,
            workers=WORKERS,
            slots=SLOTS,
            submit=JOBS_EACH,
            job_s=JOB_S,
        )
        for name in ENGINES
    ]
    # The test opens the store first, so that its schema is in place before the engines start.
    async with open_store(database) as store, AsyncExitStack() as stack:
        engines = [await stack.enter_async_context(engine_process(s, tmp_path)) for s in settings]
        assert await nats.clients() == len(ENGINES)
        watch = CapacityWatch(store, SLOTS)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch.run)
            for engine in engines:
                await engine.tell("go")

            await poll_until(_ended_at_least(store, BEFORE_OUTAGE), 60)
            nats.kill()
            unfinished_at_kill = await count_jobs(store, UNFINISHED, 10_000)
            ended_at_kill = await count_jobs(store, SUCCEEDED, 10_000)
            assert unfinished_at_kill > 0, "the run was over before the outage"

            # the engines work on without the bus: jobs are still assigned, run and ended
            await poll_until(_ended_at_least(store, ended_at_kill + DURING_OUTAGE), 60)
            await trio.to_thread.run_sync(nats.start)

            async def both_back() -> bool:
                return await nats.clients() == len(ENGINES)

            await poll_until(both_back, 30)  # the engines reconnected by themselves
            async with open_nats_bus(nats.url) as bus, bus.subscribe("jobs.>") as events:
                # and publish again, while the run is still going
                assert await count_jobs(store, UNFINISHED) > 0, "the run ended before NATS"
                with trio.fail_after(10):
                    while not isinstance(await events.receive(), JobFinished):
                        pass

            await wait_until_all_finished(store, 60)
            nursery.cancel_scope.cancel()
        for engine in engines:
            await engine.expect("submitted", 10)
            await engine.stop()
        jobs = await all_jobs(store)

    records = {engine.name: engine.records() for engine in engines}
    accepted = [job_id for r in records.values() for job_id in r.accepted]
    assert len(accepted) == len(ENGINES) * JOBS_EACH
    assert set(accepted) == set(jobs), "the store and the engines disagree on the jobs"
    # no job was lost, none was sent back to the queue: the outage cost no attempt
    executions = check_each_ran_once(jobs, records)
    assert all(r.executions for r in records.values()), "an engine ran nothing"
    check_capacity(executions, watch, SLOTS)
    # each engine saw the outage, and said so in its log (warnings reach its stderr)
    for engine in engines:
        assert "lost the NATS connection" in engine.log.read_text(), engine.name
