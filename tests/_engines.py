"""The harness of ``test_two_engines.py``: engine processes (``_engine_process.py``) driven
through their standard input and output, what they wrote down, and watching the store while
they work."""

from __future__ import annotations

import json
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from subprocess import PIPE
from typing import Any

import attrs
import trio

from hodei_core import Job, JobState
from hodei_core.ports import JobQuery, Store

from ._engine_process import EngineSettings

SCRIPT = Path(__file__).with_name("_engine_process.py")
ACTIVE = frozenset(state for state in JobState if state.is_active)
UNFINISHED = frozenset(state for state in JobState if not state.is_terminal)
# Longer than an engine process needs to import everything and open its store.
START_TIMEOUT_S = 60.0
# How often the test looks at the store while the engines work.
POLL_S = 0.05

# -- engine processes ---------------------------------------------------------------------------


@attrs.frozen
class Execution:
    """One attempt of one job, as the engine that ran it wrote it down."""

    engine: str
    job: str
    attempt: int
    worker: str
    load: int  # attempts the worker ran at that moment, this one included
    ended: bool


@attrs.frozen
class Records:
    """What one engine process wrote down."""

    accepted: list[str]
    executions: list[Execution]


class EngineProcess:
    """An engine process the test talks to through its standard input and output."""

    def __init__(self, settings: EngineSettings, process: trio.Process, log: Path) -> None:
        self.settings = settings
        self.process = process
        self.log = log
        self._buffer = bytearray()

    @property
    def name(self) -> str:
        """The prefix of its workers' names."""
        return self.settings.name_prefix

    def _tail(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"engine {self.name} (exit {self.process.returncode}), its stderr:\n{text[-4000:]}"

    async def expect(self, line: str, timeout_s: float) -> None:
        """Wait for the process to say ``line``; fail with its log if it says anything else
        or nothing in time."""
        assert self.process.stdout is not None
        with trio.move_on_after(timeout_s) as waiting:
            while b"\n" not in self._buffer:
                data = await self.process.stdout.receive_some()
                if not data:
                    await self.process.wait()
                    raise AssertionError(f"expected {line!r}, got the end; {self._tail()}")
                self._buffer += data
        if waiting.cancelled_caught:
            raise AssertionError(f"expected {line!r}, got nothing in {timeout_s}s; {self._tail()}")
        said, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        assert said.decode() == line, f"expected {line!r}, got {said!r}; {self._tail()}"

    async def tell(self, line: str) -> None:
        """Write one line to its standard input."""
        assert self.process.stdin is not None
        await self.process.stdin.send_all(line.encode() + b"\n")

    async def stop(self) -> None:
        """Ask it to stop, and check that it closed its engine and exited cleanly."""
        await self.tell("stop")
        await self.expect("stopped", 30)
        with trio.fail_after(30):
            code = await self.process.wait()
        assert code == 0, self._tail()

    def freeze(self) -> None:
        """SIGSTOP: it does nothing more until ``thaw`` or ``kill``."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: it goes on from where ``freeze`` stopped it."""
        self.process.send_signal(signal.SIGCONT)

    async def kill(self) -> None:
        """``kill -9``: no chance to finish anything."""
        self.process.kill()
        with trio.fail_after(10):
            assert await self.process.wait() == -9

    def records(self) -> Records:
        """Everything it wrote down (a line cut by a kill is dropped)."""
        accepted: list[str] = []
        started: dict[tuple[str, int], dict[str, Any]] = {}
        ended: set[tuple[str, int]] = set()
        executions: list[Execution] = []
        for line in Path(self.settings.records).read_text().splitlines():
            try:
                note = json.loads(line)
            except json.JSONDecodeError:
                continue  # the last line of a killed process
            if note["e"] == "accepted":
                accepted.append(note["job"])
                continue
            key = (note["job"], note["attempt"])
            if note["e"] == "start":
                # one engine running one attempt twice shows as two executions, not one
                if key in started:
                    executions.append(self._execution(started[key], key in ended))
                started[key] = note
                ended.discard(key)
            else:
                ended.add(key)
        executions.extend(self._execution(note, key in ended) for key, note in started.items())
        return Records(accepted, executions)

    def _execution(self, note: dict[str, Any], ended: bool) -> Execution:
        return Execution(
            self.name, note["job"], note["attempt"], note["worker"], note["load"], ended
        )


@asynccontextmanager
async def engine_process(settings: EngineSettings, tmp_path: Path) -> AsyncIterator[EngineProcess]:
    """Start an engine process; once it says ``ready``, return it. Killed on exit if it is
    still running."""
    log = Path(settings.records).with_suffix(".log")
    with log.open("wb") as stderr:
        process = await trio.lowlevel.open_process(
            [sys.executable, str(SCRIPT), settings.to_json()],
            stdin=PIPE,
            stdout=PIPE,
            stderr=stderr,
            cwd=tmp_path,
        )
    engine = EngineProcess(settings, process, log)
    try:
        await engine.expect("ready", START_TIMEOUT_S)
        yield engine
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            for stream in [process.stdin, process.stdout]:
                if stream is not None:
                    await stream.aclose()


async def start_together(engines: list[EngineProcess]) -> None:
    """Let every engine go at once, and wait until each has submitted its jobs."""
    for engine in engines:
        await engine.tell("go")
    for engine in engines:
        await engine.expect("submitted", 120)


# -- watching the store -------------------------------------------------------------------------


class CapacityWatch:
    """Looks at the store again and again while the engines work, and remembers every moment
    a worker held more jobs than it has slots (each look is one consistent read)."""

    def __init__(self, store: Store, slots: int) -> None:
        self.store = store
        self.slots = slots
        self.looks = 0
        self.overruns: list[dict[str | None, int]] = []

    async def run(self) -> None:
        """Look until cancelled."""
        while True:
            active = await self.store.list_jobs(JobQuery(states=ACTIVE, limit=100_000))
            held = Counter(job.worker_id for job in active)
            self.looks += 1
            if any(count > self.slots for count in held.values()):
                self.overruns.append(dict(held))
            await trio.sleep(POLL_S)


async def count_jobs(store: Store, states: frozenset[JobState], up_to: int = 1) -> int:
    """How many jobs are in ``states``, counting no further than ``up_to``."""
    return len(await store.list_jobs(JobQuery(states=states, limit=up_to)))


async def poll_until(condition: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    """Wait until ``condition()`` holds, asking again every ``POLL_S``."""
    with trio.fail_after(timeout_s):
        # the engines are other processes: nothing in this one can be awaited for them
        while not await condition():  # noqa: ASYNC110
            await trio.sleep(POLL_S)


async def wait_until_all_finished(store: Store, timeout_s: float) -> None:
    """Wait until no job in the store is left unfinished."""

    async def finished() -> bool:
        return not await count_jobs(store, UNFINISHED)

    await poll_until(finished, timeout_s)


async def all_jobs(store: Store) -> dict[str, Job]:
    """Every job in the store, by id."""
    return {job.id: job for job in await store.list_jobs(JobQuery(limit=1_000_000))}


def check_capacity(executions: list[Execution], watch: CapacityWatch, slots: int) -> None:
    """No worker ever ran, nor held in the store, more jobs than it has slots."""
    over = [e for e in executions if e.load > slots]
    assert not over, f"{len(over)} attempts started on a full worker, e.g. {over[:3]}"
    assert watch.looks > 0
    assert not watch.overruns, f"workers held more than {slots} jobs: {watch.overruns[:3]}"


def check_each_ran_once(jobs: dict[str, Job], records: dict[str, Records]) -> list[Execution]:
    """Every job succeeded at its first attempt, ran once to its end, and on the worker the
    store has it on; returns the executions, for more checks."""
    assert Counter((job.state, job.attempt) for job in jobs.values()) == {
        (JobState.SUCCEEDED, 1): len(jobs)
    }
    executions = [e for r in records.values() for e in r.executions]
    runs = Counter(e.job for e in executions)
    twice = [job_id for job_id, count in runs.items() if count > 1]
    assert not twice, f"{len(twice)} jobs ran more than once, e.g. {twice[:3]}"
    assert set(runs) == set(jobs)
    assert all(e.ended and e.attempt == 1 for e in executions)
    assert all(jobs[e.job].worker_id == e.worker for e in executions)
    return executions
