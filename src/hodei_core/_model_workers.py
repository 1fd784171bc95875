"""The values that describe the fleet: workers, their capacity, and what they use."""

from __future__ import annotations

import attrs

from ._model_jobs import FastHashEnum, JobSpec, labels

__all__ = ["Capacity", "Worker", "WorkerRegistration", "WorkerState", "WorkerView", "fits"]


class WorkerState(FastHashEnum):
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
    labels: frozenset[str] = attrs.field(factory=frozenset, converter=labels)
    capacity: Capacity = Capacity()
    version: str = ""
    hostname: str = ""


@attrs.frozen(kw_only=True)
class Worker:
    """A registered worker. ``name`` is unique: registering it again updates this record."""

    id: str
    name: str
    labels: frozenset[str] = attrs.field(factory=frozenset, converter=labels)
    capacity: Capacity = Capacity()
    state: WorkerState = WorkerState.ONLINE
    last_heartbeat: float = 0.0
    registered_at: float = 0.0
    version: str = ""
    hostname: str = ""


def fits(
    worker: Worker, used_slots: int, used_cpu: float, used_memory_mb: int, spec: JobSpec
) -> bool:
    """Whether ``worker``, using that much already, has ``spec``'s labels and room for it.

    ``WorkerView.fits`` for a store that keeps the counts without making views of them.
    """
    capacity = worker.capacity
    if used_slots >= capacity.slots or not spec.labels <= worker.labels:
        return False
    res = spec.resources
    if capacity.cpu is not None and used_cpu + res.cpu > capacity.cpu:
        return False
    return not (
        capacity.memory_mb is not None and used_memory_mb + res.memory_mb > capacity.memory_mb
    )


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
        return fits(self.worker, self.used_slots, self.used_cpu, self.used_memory_mb, spec)

    def with_job(self, spec: JobSpec) -> WorkerView:
        """This view after taking one more job."""
        return WorkerView(
            self.worker,
            self.used_slots + 1,
            self.used_cpu + spec.resources.cpu,
            self.used_memory_mb + spec.resources.memory_mb,
        )
