"""Events: frozen values announcing a change that is already durable in the store.

Each event has a ``topic`` made of dot-separated tokens, matched by subscription patterns where
``*`` stands for one token and a final ``>`` for one or more (as in NATS subjects):

- ``jobs.<tenant>.<job_id>.<what>`` for a job's life (``submitted``, ``started``, ``log``,
  ``finished``, ``cancel``),
- ``workers.<worker_id>.<what>`` for what a worker must hear (``assigned``, ``cancel``,
  ``drain``) and its own life (``registered``, ``left``, ``lost``),
- ``runs.<tenant>.<run_id>.finished`` for pipeline runs,
- ``sched.wake`` when capacity or work appears, for schedulers in other processes.

Delivery is at most once: the store stays the source of truth, and a consumer that may have
missed an event re-reads it.
"""

from __future__ import annotations

import attrs

from ._models import Job, JobState, RunState

__all__ = [
    "Event",
    "JobAssigned",
    "JobCancelRequested",
    "JobFinished",
    "JobStarted",
    "JobSubmitted",
    "LogAppended",
    "RunFinished",
    "SchedulerWake",
    "WorkerDrainRequested",
    "WorkerLeft",
    "WorkerLost",
    "WorkerRegistered",
    "topic_matches",
]


@attrs.frozen
class JobSubmitted:
    """A job was accepted and queued."""

    job_id: str
    tenant: str

    @property
    def topic(self) -> str:
        """``jobs.<tenant>.<job_id>.submitted``."""
        return f"jobs.{self.tenant}.{self.job_id}.submitted"


@attrs.frozen
class JobAssigned:
    """A job was placed on a worker; wakes that worker's long-poll."""

    job_id: str
    tenant: str
    attempt: int
    worker_id: str

    @property
    def topic(self) -> str:
        """``workers.<worker_id>.assigned``."""
        return f"workers.{self.worker_id}.assigned"


@attrs.frozen
class JobStarted:
    """A worker started the job's process."""

    job_id: str
    tenant: str
    attempt: int
    worker_id: str

    @property
    def topic(self) -> str:
        """``jobs.<tenant>.<job_id>.started``."""
        return f"jobs.{self.tenant}.{self.job_id}.started"


@attrs.frozen
class LogAppended:
    """New log chunks of a job attempt are stored, up to ``last_seq``."""

    job_id: str
    tenant: str
    attempt: int
    last_seq: int

    @property
    def topic(self) -> str:
        """``jobs.<tenant>.<job_id>.log``."""
        return f"jobs.{self.tenant}.{self.job_id}.log"


@attrs.frozen
class JobFinished:
    """A job reached a terminal state, or ended an attempt and was queued again."""

    job: Job

    @property
    def state(self) -> JobState:
        """The job's state after the attempt."""
        return self.job.state

    @property
    def topic(self) -> str:
        """``jobs.<tenant>.<job_id>.finished``."""
        return f"jobs.{self.job.tenant}.{self.job.id}.finished"


@attrs.frozen
class JobCancelRequested:
    """A running job must be stopped by its worker."""

    job_id: str
    tenant: str
    attempt: int
    worker_id: str

    @property
    def topic(self) -> str:
        """``workers.<worker_id>.cancel``."""
        return f"workers.{self.worker_id}.cancel"


@attrs.frozen
class WorkerRegistered:
    """A worker registered (or registered again)."""

    worker_id: str

    @property
    def topic(self) -> str:
        """``workers.<worker_id>.registered``."""
        return f"workers.{self.worker_id}.registered"


@attrs.frozen
class WorkerDrainRequested:
    """A worker must take no new jobs."""

    worker_id: str

    @property
    def topic(self) -> str:
        """``workers.<worker_id>.drain``."""
        return f"workers.{self.worker_id}.drain"


@attrs.frozen
class WorkerLeft:
    """A worker went offline on purpose (it drained, or its agent stopped)."""

    worker_id: str

    @property
    def topic(self) -> str:
        """``workers.<worker_id>.left``."""
        return f"workers.{self.worker_id}.left"


@attrs.frozen
class WorkerLost:
    """A worker missed its heartbeats; its jobs went back to the queue or failed."""

    worker_id: str
    job_ids: tuple[str, ...] = ()

    @property
    def topic(self) -> str:
        """``workers.<worker_id>.lost``."""
        return f"workers.{self.worker_id}.lost"


@attrs.frozen
class RunFinished:
    """A pipeline run reached a terminal state."""

    run_id: str
    tenant: str
    state: RunState

    @property
    def topic(self) -> str:
        """``runs.<tenant>.<run_id>.finished``."""
        return f"runs.{self.tenant}.{self.run_id}.finished"


@attrs.frozen
class SchedulerWake:
    """Work or capacity appeared; schedulers elsewhere should look at the queue."""

    @property
    def topic(self) -> str:
        """``sched.wake``."""
        return "sched.wake"


Event = (
    JobSubmitted
    | JobAssigned
    | JobStarted
    | LogAppended
    | JobFinished
    | JobCancelRequested
    | WorkerRegistered
    | WorkerDrainRequested
    | WorkerLeft
    | WorkerLost
    | RunFinished
    | SchedulerWake
)


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether ``topic`` matches ``pattern`` (``*`` one token, trailing ``>`` the rest)."""
    p = pattern.split(".")
    t = topic.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(t) > i
        if i >= len(t) or (token != "*" and token != t[i]):
            return False
    return len(p) == len(t)
