"""The stock scheduling policies. Any object with a matching ``choose`` works as well.

Each receives candidates that already satisfy every constraint (online, labels, capacity); a
policy only ranks them. Ties are broken by the candidates' order, which makes the stock policies
deterministic.

``FirstFit``, ``LeastLoaded`` and ``BinPack`` rank by a key (``sort_key``), which lets the
scheduler keep the candidates in order instead of asking for each job (see
``hodei_core.ports.RankingPolicy``).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter

from ._models import Job, WorkerView

__all__ = ["BinPack", "FirstFit", "LeastLoaded", "RoundRobin"]

# attrgetter keys: min() over every candidate of every job is the scheduler's inner loop
_by_load = attrgetter("load")
_by_free_slots = attrgetter("free_slots")


class FirstFit:
    """The first candidate: cheapest, and keeps work on the earliest registered workers."""

    def choose(self, job: Job, candidates: Sequence[WorkerView]) -> WorkerView | None:
        """The first candidate."""
        return candidates[0] if candidates else None

    def sort_key(self, view: WorkerView) -> float:
        """Every candidate ranks the same: the first one wins."""
        return 0.0

    def __repr__(self) -> str:
        return "FirstFit()"


class LeastLoaded:
    """The candidate with the smallest share of its slots in use: spreads work out."""

    def choose(self, job: Job, candidates: Sequence[WorkerView]) -> WorkerView | None:
        """The least loaded candidate (the first of equals)."""
        if not candidates:
            return None
        return min(candidates, key=_by_load)

    def sort_key(self, view: WorkerView) -> float:
        """The share of the worker's slots in use."""
        return view.load

    def __repr__(self) -> str:
        return "LeastLoaded()"


class BinPack:
    """The candidate with the fewest free slots: fills workers up, leaving others idle."""

    def choose(self, job: Job, candidates: Sequence[WorkerView]) -> WorkerView | None:
        """The fullest candidate that still has room."""
        if not candidates:
            return None
        return min(candidates, key=_by_free_slots)

    def sort_key(self, view: WorkerView) -> float:
        """The worker's free slots."""
        return view.free_slots

    def __repr__(self) -> str:
        return "BinPack()"


class RoundRobin:
    """Takes turns: the next worker id after the one chosen last time, in id order."""

    def __init__(self) -> None:
        self._last: str | None = None

    def choose(self, job: Job, candidates: Sequence[WorkerView]) -> WorkerView | None:
        """The candidate whose id follows the last chosen one (wrapping around)."""
        if not candidates:
            return None
        ordered = sorted(candidates, key=lambda v: v.id)
        choice = ordered[0]
        if self._last is not None:
            for view in ordered:
                if view.id > self._last:
                    choice = view
                    break
        self._last = choice.id
        return choice

    def __repr__(self) -> str:
        return "RoundRobin()"
