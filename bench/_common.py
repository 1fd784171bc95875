"""What the benchmarks share: repeating a measurement and reporting medians against targets."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

import attrs

__all__ = ["Result", "percentile", "report", "repeat"]


@attrs.frozen
class Result:
    """One figure: its median over the repeats, the target, and which way is better."""

    name: str
    values: tuple[float, ...]
    unit: str
    target: float | None  # None: reported, not judged
    higher_is_better: bool

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def ok(self) -> bool:
        if self.target is None:
            return True
        return self.median >= self.target if self.higher_is_better else self.median <= self.target

    def line(self) -> str:
        spread = f"{min(self.values):,.2f}..{max(self.values):,.2f}"
        if self.target is None:
            judged = "for information"
        else:
            sign = ">=" if self.higher_is_better else "<="
            judged = f"target {sign} {self.target:,g}"
        verdict = "" if self.target is None else ("  ok" if self.ok else "  MISSED")
        return (
            f"{self.name:<44} median {self.median:>12,.2f} {self.unit:<8} "
            f"(runs {spread}; {judged}){verdict}"
        )


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of ``values``, nearest rank."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered)) - 1))
    return ordered[rank]


def repeat(n: int, measure: Callable[[], dict[str, float]]) -> dict[str, tuple[float, ...]]:
    """Run ``measure`` ``n`` times; each figure's values across the runs."""
    runs = [measure() for _ in range(n)]
    return {key: tuple(run[key] for run in runs) for key in runs[0]}


def report(results: Sequence[Result]) -> bool:
    """Print the results; True if every target was met."""
    for result in results:
        print(result.line())
    return all(r.ok for r in results)
