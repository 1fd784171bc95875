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
        res = spec.resources
        cpu, memory_mb = self.used_cpu + res.cpu, self.used_memory_mb + res.memory_mb
        return _view(self.worker, self.used_slots + 1, cpu, memory_mb)


# ``WorkerView(...)`` goes through attrs' frozen ``__init__`` and ``__attrs_post_init__``; a
# scheduling pass makes a view for every job it places, so ``with_job`` sets the slots directly.
assert [a.name for a in attrs.fields(WorkerView)] == [
    "worker",
    "used_slots",
    "used_cpu",
    "used_memory_mb",
    "free_slots",
    "load",
], "_view sets every field of WorkerView"
_new = object.__new__
_set_worker = WorkerView.worker.__set__  # type: ignore[attr-defined]
_set_used_slots = WorkerView.used_slots.__set__  # type: ignore[attr-defined]
_set_used_cpu = WorkerView.used_cpu.__set__  # type: ignore[attr-defined]
_set_used_memory_mb = WorkerView.used_memory_mb.__set__  # type: ignore[attr-defined]
_set_free_slots = WorkerView.free_slots.__set__  # type: ignore[attr-defined]
_set_load = WorkerView.load.__set__  # type: ignore[attr-defined]


def _view(worker: Worker, used_slots: int, used_cpu: float, used_memory_mb: int) -> WorkerView:
    """``WorkerView(worker, used_slots, used_cpu, used_memory_mb)``, faster."""
    view: WorkerView = _new(WorkerView)
    _set_worker(view, worker)
    _set_used_slots(view, used_slots)
    _set_used_cpu(view, used_cpu)
    _set_used_memory_mb(view, used_memory_mb)
    slots = worker.capacity.slots
    _set_free_slots(view, slots - used_slots)
    _set_load(view, used_slots / slots if slots else 1.0)
    return view
