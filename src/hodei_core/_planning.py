"""A scheduling pass's plan: which queued job goes to which worker. Pure: no store, no bus."""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Sequence

from ._models import Job, JobSpec, WorkerView
from ._quota import QuotaManager
from .ports import Assignment, RankingPolicy, SchedulingPolicy

__all__ = ["plan", "ranking_key"]

log = logging.getLogger("hodei.scheduler")

# (labels, resources): jobs of one kind fit the same workers
_Kind = tuple[frozenset[str], object]


class _Candidates:
    """The workers that fit one kind of job, kept up to date as the pass assigns.

    With a ranking policy (``hodei_core.ports.RankingPolicy``), they are also kept in a heap by
    ``(sort_key, registration order)``, whose top is the policy's choice: a job then costs a
    heap operation rather than a look at every candidate. A heap entry whose view has been
    replaced since is dropped when it reaches the top.
    """

    def __init__(
        self,
        fitting: dict[str, WorkerView],
        order: dict[str, int],
        sort_key: Callable[[WorkerView], float] | None,
    ) -> None:
        self.fitting = fitting  # by worker id, in registration order
        self._order = order
        self._sort_key = sort_key
        self._heap: list[tuple[float, int, WorkerView]] = []
        if sort_key is not None:
            self._heap = [(sort_key(v), order[i], v) for i, v in fitting.items()]
            heapq.heapify(self._heap)

    def choose(self, policy: SchedulingPolicy, job: Job) -> WorkerView | None:
        if self._sort_key is None:
            choice = policy.choose(job, list(self.fitting.values()))
            if choice is None:
                return None
            # by identity: comparing views field by field would cost more than the choice
            if self.fitting.get(getattr(choice, "id", "")) is not choice:
                log.error("policy %r chose %r, not one of the candidates", policy, choice)
                return None
            return choice
        heap, fitting = self._heap, self.fitting
        while heap:
            view = heap[0][2]
            if fitting.get(view.worker.id) is view:
                return view
            heapq.heappop(heap)  # that worker took a job or filled up since
        return None

    def took(self, view: WorkerView, updated: WorkerView, spec: JobSpec) -> None:
        """``view`` was given a job of this kind and is now ``updated``."""
        worker_id = view.worker.id
        if not updated.fits(spec):
            del self.fitting[worker_id]
            return
        self.fitting[worker_id] = updated
        if self._sort_key is not None:
            entry = (self._sort_key(updated), self._order[worker_id], updated)
            heapq.heapreplace(self._heap, entry)  # the top was ``view``


def ranking_key(policy: SchedulingPolicy) -> Callable[[WorkerView], float] | None:
    """``policy.sort_key`` if the policy ranks by it (a ``RankingPolicy``), else None.

    A subclass that overrides ``choose`` below the class that defined ``sort_key`` (say, a
    ``LeastLoaded`` with a ``choose`` of its own) has not promised that its ``choose`` follows
    the key it inherited: it is asked for every job, as a policy without a key is.
    """
    if not isinstance(policy, RankingPolicy):
        return None
    mro = type(policy).__mro__
    chooser = next((c for c in mro if "choose" in vars(c)), None)
    ranker = next((c for c in mro if "sort_key" in vars(c)), None)
    if chooser is None or ranker is None or not issubclass(ranker, chooser):
        return None
    return policy.sort_key


def plan(
    queued: Sequence[Job],
    views: Sequence[WorkerView],
    *,
    free: int,
    policy: SchedulingPolicy,
    quotas: QuotaManager,
    running: dict[str, int] | None,
    homeless: list[Job],
) -> list[Assignment]:
    """The assignments ``policy`` chooses for ``queued`` jobs among ``views``, until the
    ``free`` slots are taken; jobs no online worker has room for go to ``homeless``.

    ``running`` counts each tenant's active jobs when some tenant's quota limits them (and is
    kept up to date); None when none does.
    """
    by_id = {v.id: v for v in views}
    order = {worker_id: i for i, worker_id in enumerate(by_id)}
    sort_key = ranking_key(policy)
    # The candidates of each kind of job, so that a batch of alike jobs filters the workers
    # once rather than once per job. A worker that takes a job changes for every kind: the
    # other kinds' candidates are dropped then, and made again if needed.
    cache: dict[_Kind, _Candidates] = {}
    labels: frozenset[str] | None = None
    resources: object = None
    kind: _Kind = (frozenset(), None)
    candidates = _Candidates({}, order, None)
    assignments: list[Assignment] = []
    for job in queued:
        if len(assignments) == free:
            # every slot is taken: the jobs left wait for the next pass (and are not homeless:
            # a full fleet says nothing about whether they could ever run)
            break
        spec = job.spec
        if running is not None:
            limit = quotas.quota(job.tenant).max_running
            if limit is not None and running.get(job.tenant, 0) >= limit:
                continue
        if spec.labels is not labels or spec.resources is not resources:
            # (alike jobs usually share these values: the key is made only when they change)
            labels, resources = spec.labels, spec.resources
            kind = (labels, resources)
            known = cache.get(kind)
            if known is None:
                fitting = {i: v for i, v in by_id.items() if v.fits(spec)}
                known = cache[kind] = _Candidates(fitting, order, sort_key)
            candidates = known
        if not candidates.fitting:
            homeless.append(job)
            continue
        choice = candidates.choose(policy, job)
        if choice is None:
            continue
        updated = choice.with_job(spec)
        by_id[choice.worker.id] = updated
        candidates.took(choice, updated, spec)
        if len(cache) > 1:
            for other in [k for k in cache if k != kind]:
                del cache[other]
        assignments.append(Assignment(job.id, job.attempt, choice.worker.id))
        if running is not None:
            running[job.tenant] = running.get(job.tenant, 0) + 1
    return assignments
