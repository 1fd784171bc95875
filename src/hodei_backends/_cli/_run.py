"""``hodei run FILE``: run a pipeline file on the embedded engine, showing its progress."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable

import trio

from hodei_core import Hodei, Job, Run
from hodei_core.ports import JobQuery

from .._documents import load_pipeline_file
from .._embedded import open_embedded
from ._display import Display

__all__ = ["command", "run_pipeline_file"]

_REFRESH_S = 0.1


def command(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Declare ``hodei run``'s flags; return what runs it."""
    parser.add_argument("file", help="pipeline file (YAML or JSON)")
    parser.add_argument(
        "--store", default="memory://", help="store URL (default: memory://, nothing kept)"
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=os.cpu_count() or 2,
        help="how many steps may run at once (default: the number of CPUs)",
    )
    parser.add_argument(
        "--label", action="append", default=[], help="a label the local worker has (repeatable)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no live status line")

    def run(args: argparse.Namespace) -> int:
        live = not args.no_progress and sys.stdout.isatty()
        return trio.run(
            run_pipeline_file, args.file, args.store, args.jobs, args.label, Display(live=live)
        )

    return run


async def run_pipeline_file(
    path: str, store: str, jobs: int, labels: list[str], display: Display
) -> int:
    """Run the pipeline in ``path``; returns 0 if it succeeded, 1 if not, 130 if interrupted.

    Raises:
        PipelineInvalid: the file is not a valid pipeline.
    """
    name, steps = load_pipeline_file(path)
    display.width = max(len(s.name) for s in steps)
    start = trio.current_time()
    async with open_embedded(workers=1, slots=max(jobs, 1), store=store, labels=labels) as hodei:
        pipeline = await hodei.create_pipeline(name, steps)
        run = await hodei.start_run(pipeline.id)
        interrupted = False
        async with trio.open_nursery() as nursery:

            async def on_interrupt() -> None:
                nonlocal interrupted
                with trio.open_signal_receiver(signal.SIGINT) as signals:
                    async for _ in signals:
                        if interrupted:  # a second Ctrl-C: stop waiting for a clean cancel
                            raise KeyboardInterrupt
                        interrupted = True
                        display.message("hodei: interrupted, cancelling the run (^C again to quit)")
                        await hodei.cancel_run(run.id)

            nursery.start_soon(on_interrupt)
            run, finished = await _follow(hodei, run, display)
            nursery.cancel_scope.cancel()
        display.summary(run, finished, trio.current_time() - start)
    if interrupted:
        return 130
    return 0 if run.state.value == "succeeded" else 1


async def _follow(hodei: Hodei, run: Run, display: Display) -> tuple[Run, dict[str, Job]]:
    """Print every step's output as it comes until the run ends; returns the run and its jobs."""
    followed: set[str] = set()
    jobs: dict[str, Job] = {}
    async with trio.open_nursery() as nursery:

        async def follow(step: str, job_id: str) -> None:
            async for chunk in hodei.follow_logs(job_id):
                display.output(step, chunk.stream, chunk.data)
            display.flush_step(step)

        async with hodei.bus.subscribe(f"runs.{run.tenant}.{run.id}.>") as events:
            while True:
                run = await hodei.get_run(run.id)
                for job in await hodei.store.list_jobs(JobQuery(run_id=run.id, limit=10_000)):
                    jobs[job.id] = job
                    if job.id not in followed and job.step is not None:
                        followed.add(job.id)
                        nursery.start_soon(follow, job.step, job.id)
                display.status(run, jobs, hodei.clock())
                if run.state.is_terminal:
                    break
                with trio.move_on_after(_REFRESH_S):
                    await events.receive()
    # followers are done: every step's output has been printed; read the final jobs
    for job in await hodei.store.list_jobs(JobQuery(run_id=run.id, limit=10_000)):
        jobs[job.id] = job
    return run, jobs
