"""Prometheus metrics in the text exposition format, written by hand (a few gauges, counters
and histograms do not justify a client library).

Gauges of jobs and workers are read from the store at scrape time, so they are true for the
whole deployment. Counters and histograms are this process's own: what its endpoints saw
(dispatch latency at each start report, log lag at each log report) and the job events its
bus delivered; so is ``hodei_bus_up``, its own connection to the bus.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Sequence

import trio

from hodei_core import Hodei, JobState, WorkerState
from hodei_core.events import JobFinished, JobSubmitted
from hodei_core.ports import JobQuery

from ._health import bus_state

__all__ = ["Histogram", "Metrics"]

# From a millisecond to a minute: dispatch latency is milliseconds when all is well, and
# seconds when the queue waits for capacity.
_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
_ACTIVE = frozenset({JobState.QUEUED, JobState.ASSIGNED, JobState.RUNNING, JobState.CANCELLING})
# The store has no count: active jobs are counted by listing them, up to this many.
_COUNT_CAP = 1_000_000


class Histogram:
    """A Prometheus histogram: cumulative buckets, a sum and a count."""

    def __init__(self, name: str, help: str, buckets: Sequence[float] = _LATENCY_BUCKETS) -> None:
        self.name = name
        self.help = help
        self._bounds = tuple(buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one observation (negative values, from clock skew, count as 0)."""
        value = max(value, 0.0)
        if not math.isfinite(value):
            return
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self) -> Iterable[str]:
        """The exposition lines."""
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        total = 0
        for bound, count in zip((*self._bounds, math.inf), self._counts, strict=True):
            total += count
            le = "+Inf" if bound == math.inf else repr(bound)
            yield f'{self.name}_bucket{{le="{le}"}} {total}'
        yield f"{self.name}_sum {self.sum!r}"
        yield f"{self.name}_count {self.count}"


class Metrics:
    """What ``/metrics`` shows; the endpoints feed it."""

    def __init__(self) -> None:
        self.dispatch_latency = Histogram(
            "hodei_dispatch_latency_seconds",
            "Time from a job's submission to its assignment to a worker (assigned_at - "
            "created_at), observed when the worker reports the start.",
        )
        self.start_latency = Histogram(
            "hodei_start_latency_seconds",
            "Time from a job's submission to its worker's start report (started_at - created_at).",
        )
        self.log_lag = Histogram(
            "hodei_log_lag_seconds",
            "Time from a log chunk's timestamp on the worker to its arrival at the server.",
        )
        self.finished: Counter[str] = Counter()
        self.submitted = 0
        self.polls_waiting = 0

    async def collect(
        self, hodei: Hodei, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Count job events from the bus until cancelled (missed events go uncounted: the bus
        delivers at most once)."""
        async with hodei.bus.subscribe("jobs.>") as events:
            task_status.started()
            async for event in events:
                if isinstance(event, JobFinished) and event.state.is_terminal:
                    self.finished[event.state.value] += 1
                elif isinstance(event, JobSubmitted):
                    self.submitted += 1

    async def render(self, hodei: Hodei) -> str:
        """The exposition text, with gauges read from the store now."""
        active = await hodei.store.list_jobs(JobQuery(states=_ACTIVE, limit=_COUNT_CAP))
        by_state = Counter(job.state for job in active)
        workers = Counter(worker.state for worker in await hodei.store.list_workers())
        lines = [
            "# HELP hodei_queue_length Jobs waiting for a worker.",
            "# TYPE hodei_queue_length gauge",
            f"hodei_queue_length {by_state[JobState.QUEUED]}",
            "# HELP hodei_jobs Jobs not yet finished, by state.",
            "# TYPE hodei_jobs gauge",
            *(f'hodei_jobs{{state="{s.value}"}} {by_state[s]}' for s in JobState if s in _ACTIVE),
            "# HELP hodei_jobs_finished_total Jobs that reached a final state, by state.",
            "# TYPE hodei_jobs_finished_total counter",
            *(
                f'hodei_jobs_finished_total{{state="{s.value}"}} {self.finished[s.value]}'
                for s in JobState
                if s.is_terminal
            ),
            "# HELP hodei_jobs_submitted_total Jobs submitted.",
            "# TYPE hodei_jobs_submitted_total counter",
            f"hodei_jobs_submitted_total {self.submitted}",
            "# HELP hodei_workers Workers, by state.",
            "# TYPE hodei_workers gauge",
            *(f'hodei_workers{{state="{s.value}"}} {workers[s]}' for s in WorkerState),
            "# HELP hodei_long_polls_waiting Agent long-polls waiting for work now.",
            "# TYPE hodei_long_polls_waiting gauge",
            f"hodei_long_polls_waiting {self.polls_waiting}",
            "# HELP hodei_bus_up Whether this process's event bus is connected (0 while down: "
            "the engine works on by re-reading the store, with more latency).",
            "# TYPE hodei_bus_up gauge",
            f"hodei_bus_up {int(bus_state(hodei.bus) == 'up')}",
            *self.dispatch_latency.lines(),
            *self.start_latency.lines(),
            *self.log_lag.lines(),
        ]
        return "\n".join(lines) + "\n"
