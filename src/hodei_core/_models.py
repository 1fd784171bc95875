"""The domain's values: frozen attrs classes, changed only by making new ones (``attrs.evolve``).

Nothing here serializes itself; conversion to JSON, rows or messages happens at the edges. The
values live in three modules by subject; this one gathers them for the rest of the core.
"""

from ._model_jobs import (
    DEFAULT_TENANT,
    FailureReason,
    Job,
    JobSpec,
    JobState,
    LogChunk,
    Outcome,
    Resources,
    Stream,
    TenantQuota,
    TenantUsage,
)
from ._model_pipelines import Pipeline, Run, RunState, Step, StepRun, StepState
from ._model_workers import Capacity, Worker, WorkerRegistration, WorkerState, WorkerView

__all__ = [
    "DEFAULT_TENANT",
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
