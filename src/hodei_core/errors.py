"""Every error Hodei raises on purpose, as one tree.

```
HodeiError
├── NotFound
│   ├── JobNotFound
│   ├── WorkerNotFound
│   ├── PipelineNotFound
│   └── RunNotFound
├── ValidationError            (carries every Problem at once)
│   ├── JobSpecInvalid
│   └── PipelineInvalid
├── Conflict
│   ├── InvalidTransition      (a state change the table does not allow)
│   ├── StaleAttempt           (a report about an attempt that is no longer current)
│   └── JobAlreadyFinished     (cancel or report on a job in a terminal state)
├── QuotaExceeded              (retry_after_s)
└── BackendError
    ├── StorageError
    ├── BusError
    └── ExecutorError
```

Backend errors are always raised ``from`` the driver's exception, so the cause is kept while
driver types never cross a port.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

__all__ = [
    "BackendError",
    "BusError",
    "Conflict",
    "ExecutorError",
    "HodeiError",
    "InvalidTransition",
    "JobAlreadyFinished",
    "JobNotFound",
    "JobSpecInvalid",
    "NotFound",
    "PipelineInvalid",
    "PipelineNotFound",
    "Problem",
    "QuotaExceeded",
    "RunNotFound",
    "StaleAttempt",
    "StorageError",
    "ValidationError",
    "WorkerNotFound",
]


class HodeiError(Exception):
    """The root of every error raised on purpose by Hodei and its backends."""


# -- not found ----------------------------------------------------------------------------------


class NotFound(HodeiError):
    """Something looked up by id does not exist (or is not visible to the caller)."""

    kind = "object"

    def __init__(self, id: str) -> None:
        super().__init__(f"{self.kind} {id!r} not found")
        self.id = id


class JobNotFound(NotFound):
    """No job has this id."""

    kind = "job"


class WorkerNotFound(NotFound):
    """No worker has this id."""

    kind = "worker"


class PipelineNotFound(NotFound):
    """No pipeline has this id."""

    kind = "pipeline"


class RunNotFound(NotFound):
    """No pipeline run has this id."""

    kind = "run"


# -- validation ---------------------------------------------------------------------------------


@attrs.frozen
class Problem:
    """One thing wrong with an input, and where: ``steps[2].depends_on[0]``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ValidationError(HodeiError):
    """An input was refused; ``problems`` lists every reason at once, each with its path."""

    what = "input"

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(f"{self.what} is invalid ({n} problem{'s' if n != 1 else ''}):\n{lines}")


class JobSpecInvalid(ValidationError):
    """A job specification was refused."""

    what = "job spec"


class PipelineInvalid(ValidationError):
    """A pipeline definition was refused."""

    what = "pipeline"


# -- conflicts ----------------------------------------------------------------------------------


class Conflict(HodeiError):
    """The request is well formed but contradicts the current state of things."""


class InvalidTransition(Conflict):
    """A state change that the transition table does not allow."""

    def __init__(self, what: str, id: str, current: object, wanted: object) -> None:
        super().__init__(f"{what} {id!r} cannot go from {current} to {wanted}")
        self.id = id
        self.current = current
        self.wanted = wanted


class StaleAttempt(Conflict):
    """A report names an attempt (or worker) that no longer owns the job.

    This is the fencing token at work: a worker that came back from the dead cannot overwrite
    the job's new life.
    """

    def __init__(self, job_id: str, attempt: int, current: int) -> None:
        super().__init__(
            f"job {job_id!r}: attempt {attempt} is stale, the current attempt is {current}"
        )
        self.job_id = job_id
        self.attempt = attempt
        self.current = current


class JobAlreadyFinished(Conflict):
    """The job is in a terminal state and cannot change any more."""

    def __init__(self, job_id: str, state: object) -> None:
        super().__init__(f"job {job_id!r} has already finished ({state})")
        self.job_id = job_id
        self.state = state


# -- quotas -------------------------------------------------------------------------------------


class QuotaExceeded(HodeiError):
    """The tenant may not submit more now; try again after ``retry_after_s`` seconds."""

    def __init__(self, tenant: str, reason: str, retry_after_s: float) -> None:
        super().__init__(f"tenant {tenant!r}: {reason}; retry after {retry_after_s:.1f}s")
        self.tenant = tenant
        self.reason = reason
        self.retry_after_s = retry_after_s


# -- backends -----------------------------------------------------------------------------------


class BackendError(HodeiError):
    """A backend (database, message bus, process runner) failed; ``__cause__`` says how."""


class StorageError(BackendError):
    """The store could not complete an operation."""


class BusError(BackendError):
    """The event bus could not complete an operation."""


class ExecutorError(BackendError):
    """The executor could not run a job at all (as opposed to the job failing)."""
