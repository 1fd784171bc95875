"""The values of pipelines and their runs."""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

from ._model_jobs import DEFAULT_TENANT, FastHashEnum, JobSpec

__all__ = ["Pipeline", "Run", "RunState", "Step", "StepRun", "StepState"]


def _steps(value: Iterable[Step]) -> tuple[Step, ...]:
    return tuple(value)


def _step_runs(value: Iterable[StepRun]) -> tuple[StepRun, ...]:
    return tuple(value)


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


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


class StepState(FastHashEnum):
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
