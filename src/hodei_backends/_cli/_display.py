"""What ``hodei run`` shows: prefixed output lines, a live status line, a summary table."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

import attrs

from hodei_core import Job, Run, StepState, Stream

__all__ = ["Display"]

_ICON = {
    StepState.WAITING: "·",
    StepState.RUNNING: "▶",
    StepState.SUCCEEDED: "✓",
    StepState.FAILED: "✗",
    StepState.SKIPPED: "-",
    StepState.CANCELLED: "⊘",
}


@attrs.define
class Display:
    """Writes a run's progress to a terminal (with a live status line) or a plain stream."""

    out: TextIO = sys.stdout
    live: bool = False  # redraw a status line at the bottom (only on a terminal)
    width: int = 8  # of the step-name column
    _status: str = ""
    _partial: dict[tuple[str, Stream], str] = attrs.field(factory=dict)

    def output(self, step: str, stream: Stream, data: str) -> None:
        """Print a step's output, a whole line at a time, prefixed with the step's name."""
        key = (step, stream)
        text = self._partial.pop(key, "") + data
        *lines, rest = text.split("\n")
        if rest:
            self._partial[key] = rest
        if lines:
            self._print([self._prefix(step, stream) + line for line in lines])

    def flush_step(self, step: str) -> None:
        """Print what is left of a step's last line."""
        for stream in Stream:
            rest = self._partial.pop((step, stream), "")
            if rest:
                self._print([self._prefix(step, stream) + rest])

    def message(self, text: str) -> None:
        """Print a line of Hodei's own."""
        self._print([text])

    def status(self, run: Run, jobs: dict[str, Job], now: float) -> None:
        """Redraw the status line: each step's state, and elapsed time of running ones."""
        if not self.live:
            return
        parts = []
        for step in run.steps:
            part = f"{_ICON[step.state]} {step.name}"
            job = jobs.get(step.job_id or "")
            if step.state is StepState.RUNNING and job and job.started_at:
                part += f" {now - job.started_at:.1f}s"
            parts.append(part)
        self._status = "  ".join(parts)
        self.out.write("\r\x1b[K" + self._status[:200])
        self.out.flush()

    def summary(self, run: Run, jobs: dict[str, Job], elapsed: float) -> None:
        """Print the table of steps and the run's result."""
        rows = [("STEP", "STATE", "TIME", "EXIT")]
        for step in run.steps:
            job = jobs.get(step.job_id or "")
            took = ""
            exit_code = ""
            if job is not None:
                if job.started_at is not None and job.finished_at is not None:
                    took = f"{job.finished_at - job.started_at:.2f}s"
                if job.exit_code is not None:
                    exit_code = str(job.exit_code)
                elif job.failure is not None:
                    exit_code = str(job.failure)
            rows.append((step.name, str(step.state), took, exit_code))
        lines = _table(rows)
        lines.append(f"pipeline {run.pipeline.name}: {run.state} in {elapsed:.2f}s")
        self._status = ""  # the table replaces the status line
        self._print(["", *lines])
        self.live = False

    def _prefix(self, step: str, stream: Stream) -> str:
        bar = "!" if stream is Stream.STDERR else "|"
        return f"{step:<{self.width}} {bar} "

    def _print(self, lines: Sequence[str]) -> None:
        if self.live:
            self.out.write("\r\x1b[K")
        for line in lines:
            self.out.write(line + "\n")
        if self.live and self._status:
            self.out.write(self._status[:200])
        self.out.flush()


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
