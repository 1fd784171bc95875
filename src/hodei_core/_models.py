"""The domain's values: frozen attrs classes, changed only by making new ones (``attrs.evolve``).

Nothing here serializes itself; conversion to JSON, rows or messages happens at the edges.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

import attrs

__all__ = [
    "Capacity",
    "FailureReason",
    "Job",
    "JobSpec",
    "JobState",
    "LogChunk",
    "Outcome",
    "Pipeline",
    "Resources",
    "Run",
    "RunState",
    "Step",
    "StepRun",
    "StepState",
    "Stream",
    "TenantQuota",
    "TenantUsage",
    "Worker",
    "WorkerRegistration",
    "WorkerState",
    "WorkerView",
]

DEFAULT_TENANT = "default"


def _tuple_or_none(value: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _str_map(value: Mapping[str, str] | None) -> dict[str, str]:
    return {} if value is None else dict(value)


def _labels(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


def _steps(value: Iterable[Step]) -> tuple[Step, ...]:
    return tuple(value)


def _step_runs(value: Iterable[StepRun]) -> tuple[StepRun, ...]:
    return tuple(value)


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


# -- jobs ---------------------------------------------------------------------------------------


class _FastHashEnum(enum.Enum):
    # Enum hashes its members by name in Python code; members are singletons, so the identity
    # hash is as good and far cheaper. States are hashed on every job transition.
    __hash__ = object.__hash__


class JobState(_FastHashEnum):
    """Where a job is in its life; see ``hodei_core.JOB_TRANSITIONS`` for the legal moves."""

    QUEUED = "queued"
    ASSIGNED = "assigned"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True for the states a job never leaves."""
        return self in _TERMINAL_JOB_STATES

    @property
    def is_active(self) -> bool:
        """True while the job holds a slot on a worker."""
        return self in _ACTIVE_JOB_STATES

    def __str__(self) -> str:
        return self.value


_TERMINAL_JOB_STATES = frozenset(
    {JobState.SUCCEEDED, JobState.FAILED, JobState.TIMED_OUT, JobState.CANCELLED}
)
_ACTIVE_JOB_STATES = frozenset({JobState.ASSIGNED, JobState.RUNNING, JobState.CANCELLING})


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


@attrs.frozen
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
    labels: frozenset[str] = attrs.field(factory=frozenset, converter=_labels)
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
    """

    id: str
    tenant: str = DEFAULT_TENANT
    spec: JobSpec
    state: JobState = JobState.QUEUED
    attempt: int = 1
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


# -- workers ------------------------------------------------------------------------------------


class WorkerState(_FastHashEnum):
    """A worker's standing; only ``online`` workers are given new jobs."""

    ONLINE = "online"
    DRAINING = "draining"
    OFFLINE = "offline"
    LOST = "lost"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class Capacity:
    """What a worker offers: job slots, and optionally CPU and memory budgets (None: unmetered)."""

    slots: int = 1
    cpu: float | None = None
    memory_mb: int | None = None


@attrs.frozen(kw_only=True)
class WorkerRegistration:
    """What an agent says about itself when it registers."""

    name: str
    labels: frozenset[str] = attrs.field(factory=frozenset, converter=_labels)
    capacity: Capacity = Capacity()
    version: str = ""
    hostname: str = ""


@attrs.frozen(kw_only=True)
class Worker:
    """A registered worker. ``name`` is unique: registering it again updates this record."""

    id: str
    name: str
    labels: frozenset[str] = attrs.field(factory=frozenset, converter=_labels)
    capacity: Capacity = Capacity()
    state: WorkerState = WorkerState.ONLINE
    last_heartbeat: float = 0.0
    registered_at: float = 0.0
    version: str = ""
    hostname: str = ""


@attrs.frozen
class WorkerView:
    """A worker together with what its active jobs use: what a scheduling policy ranks."""

    worker: Worker
    used_slots: int = 0
    used_cpu: float = 0.0
    used_memory_mb: int = 0
    # Derived once here, because policies compare them for every candidate of every job.
    #: Slots not taken by active jobs.
    free_slots: int = attrs.field(init=False, eq=False, repr=False)
    #: Fraction of slots in use, 0.0 to 1.0.
    load: float = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        slots = self.worker.capacity.slots
        object.__setattr__(self, "free_slots", slots - self.used_slots)
        object.__setattr__(self, "load", self.used_slots / slots if slots else 1.0)

    @property
    def id(self) -> str:
        """The worker's id."""
        return self.worker.id

    def fits(self, spec: JobSpec) -> bool:
        """Whether this worker has ``spec``'s labels and room for it right now."""
        capacity = self.worker.capacity
        if self.used_slots >= capacity.slots or not spec.labels <= self.worker.labels:
            return False
        res = spec.resources
        if capacity.cpu is not None and self.used_cpu + res.cpu > capacity.cpu:
            return False
        return not (
            capacity.memory_mb is not None
            and self.used_memory_mb + res.memory_mb > capacity.memory_mb
        )

    def with_job(self, spec: JobSpec) -> WorkerView:
        """This view after taking one more job."""
        return WorkerView(
            self.worker,
            self.used_slots + 1,
            self.used_cpu + spec.resources.cpu,
            self.used_memory_mb + spec.resources.memory_mb,
        )


# -- pipelines and runs -------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Step:
    """A named JobSpec inside a pipeline, run once every step it depends on has succeeded."""

    name: str
    spec: JobSpec
    depends_on: tuple[str, ...] = attrs.field(default=(), converter=_names)


@attrs.frozen(kw_only=True)
class Pipeline:
    """A DAG of steps, owned by a tenant."""

    id: str
    tenant: str = DEFAULT_TENANT
    name: str
    steps: tuple[Step, ...] = attrs.field(converter=_steps)
    created_at: float = 0.0

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)


class RunState(enum.Enum):
    """Where a pipeline run is: ``running``, then one of the terminal states."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True for the states a run never leaves."""
        return self is not RunState.RUNNING

    def __str__(self) -> str:
        return self.value


class StepState(_FastHashEnum):
    """Where one step of a run is."""

    WAITING = "waiting"
    RUNNING = "running"  # its job has been submitted and has not finished
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # a dependency did not succeed
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True for the states a step never leaves."""
        return self not in (StepState.WAITING, StepState.RUNNING)

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class StepRun:
    """One step's progress within a run."""

    name: str
    state: StepState = StepState.WAITING
    job_id: str | None = None


@attrs.frozen(kw_only=True)
class Run:
    """One execution of a pipeline: one job per step, submitted as dependencies succeed."""

    id: str
    pipeline: Pipeline  # as it was when the run started: later edits do not change a run
    state: RunState = RunState.RUNNING
    steps: tuple[StepRun, ...] = attrs.field(converter=_step_runs)
    cancel_requested: bool = False
    created_at: float = 0.0
    finished_at: float | None = None

    @property
    def pipeline_id(self) -> str:
        """The id of the pipeline this run executes."""
        return self.pipeline.id

    @property
    def tenant(self) -> str:
        """The tenant that owns the pipeline."""
        return self.pipeline.tenant

    def step(self, name: str) -> StepRun:
        """The progress of the step called ``name``."""
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)


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
