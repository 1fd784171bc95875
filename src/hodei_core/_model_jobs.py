"""The values of a job's life: what to run, the job itself, how it ended, its output, and
the tenant limits that admit it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

import attrs

__all__ = [
    "DEFAULT_TENANT",
    "FailureReason",
    "FastHashEnum",
    "Job",
    "JobSpec",
    "JobState",
    "LogChunk",
    "Outcome",
    "Resources",
    "Stream",
    "TenantQuota",
    "TenantUsage",
    "labels",
]

DEFAULT_TENANT = "default"


def _tuple_or_none(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _str_map(value: Mapping[str, str] | None) -> dict[str, str]:
    return {} if value is None else dict(value)


def labels(value: Iterable[str]) -> frozenset[str]:
    """A set of labels from any iterable of them (an attrs converter)."""
    return frozenset(value)


# -- jobs ---------------------------------------------------------------------------------------


class FastHashEnum(enum.Enum):
    # Enum hashes its members by name in Python code; members are singletons, so the identity
    # hash is as good and far cheaper. States are hashed on every job transition.
    __hash__ = object.__hash__


class JobState(FastHashEnum):
    """Where a job is in its life; see ``hodei_core.JOB_TRANSITIONS`` for the legal moves."""

    #: True for the states a job never leaves.
    is_terminal: bool
    #: True while the job holds a slot on a worker.
    is_active: bool

    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return str(self.value)


_TERMINAL_JOB_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED}
)
_ACTIVE_JOB_STATES = frozenset({JobState.ASSIGNED, JobState.RUNNING, JobState.CANCELLING})
# Plain attributes, not properties: they are read several times on every move of every job.
for _state in JobState:
    object.__setattr__(_state, "is_terminal", _state in _TERMINAL_JOB_STATES)
    object.__setattr__(_state, "is_active", _state in _ACTIVE_JOB_STATES)
del _state


class FailureReason(enum.Enum):
    """Why a job did not succeed. A closed set: dashboards and retries key off it."""

    SCRIPT_FAILURE = "script_failure"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"
    CANCELLED = "cancelled"
    UNSCHEDULABLE = "unschedulable"
    INTERNAL = "internal"

    def __str__(self) -> str:
        return self.value


@attrs.frozen(cache_hash=True)  # hashed by every scheduling pass, once per job
class Resources:
    """What one job needs from a worker besides a slot."""

    cpu: float = 0.0
    memory_mb: int = 0


@attrs.frozen(kw_only=True)
class JobSpec:
    """What to run. Exactly one of ``command`` (an argv list) or ``script`` (run by ``sh -c``).

    ``secrets`` are exported to the process like ``env`` but masked in its log. A worker must
    have every one of ``labels``. ``retries`` is how many more attempts a failed or lost job
    gets; higher ``priority`` is scheduled first.
    """

    command: tuple[str, ...] | None = attrs.field(default=None, converter=_tuple_or_none)
    script: str | None = None
    env: dict[str, str] = attrs.field(factory=dict, converter=_str_map)
    secrets: dict[str, str] = attrs.field(factory=dict, converter=_str_map, repr=False)
    labels: frozenset[str] = attrs.field(factory=frozenset, converter=labels)
    resources: Resources = Resources()
    timeout_s: float | None = None
    retries: int = 0
    priority: int = 0
    name: str = ""

    @property
    def argv(self) -> tuple[str, ...]:
        """The argv to execute: ``command``, or ``sh -c script``."""
        if self.command is not None:
            return self.command
        return ("sh", "-c", self.script or "")


@attrs.frozen(kw_only=True)
class Job:
    """A JobSpec submitted by a tenant, and everything that happened to it since.

    ``attempt`` starts at 1 and grows each time the job is queued again (retry, lost worker);
    together with ``id`` it is the fencing token every worker report must carry.
    ``unstarted_losses`` counts the attempts lost before they started (their worker vanished
    first): those do not count against ``spec.retries``.
    """

    id: str
    tenant: str = DEFAULT_TENANT
    spec: JobSpec
    state: JobState = JobState.QUEUED
    attempt: int = 1
    unstarted_losses: int = 0
    worker_id: str | None = None
    exit_code: int | None = None
    failure: FailureReason | None = None
    created_at: float = 0.0
    assigned_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    run_id: str | None = None
    step: str | None = None

    @property
    def name(self) -> str:
        """The spec's name, or the step's name for a pipeline job, or the id."""
        return self.spec.name or self.step or self.id

    @property
    def is_finished(self) -> bool:
        """True once the job is in a terminal state."""
        return self.state.is_terminal


@attrs.frozen
class Outcome:
    """How one attempt ended, as the worker saw it."""

    exit_code: int | None
    timed_out: bool = False
    cancelled: bool = False
    error: str | None = None  # the executor could not run the job at all


class Stream(enum.Enum):
    """Which output stream a log chunk came from."""

    STDOUT = "stdout"
    STDERR = "stderr"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class LogChunk:
    """A piece of a job attempt's output. ``seq`` counts 0, 1, 2… within one attempt."""

    seq: int
    stream: Stream
    data: str
    ts: float = 0.0


# -- tenants ------------------------------------------------------------------------------------


@attrs.frozen
class TenantQuota:
    """Limits on one tenant. None means unlimited."""

    max_running: int | None = None
    max_queued: int | None = None
    submit_rate: int | None = None  # submissions per minute


@attrs.frozen
class TenantUsage:
    """What a tenant uses now, as read by the store inside the admitting transaction."""

    queued: int = 0
    running: int = 0
    recent_submissions: tuple[float, ...] = ()  # created_at of submissions in the window
