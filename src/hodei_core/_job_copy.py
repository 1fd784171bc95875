"""Copies of a job with some fields changed: the step every move of a job takes.

``attrs.evolve`` looks the class's fields up, gathers them into keyword arguments and runs the
generated ``__init__``; a job moves four times or more in its life, and that was the costliest
part of a move. A job has no validators or converters, so a copy only needs its slots set: for
each set of changed fields, one function is written out that copies the other slots one by one
and sets the changed ones, with no list, loop or keyword dict in between. A store holds many
jobs, so the job being moved is rarely in the CPU's cache: the fewer steps the better.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from typing import Any

import attrs

from ._models import Job, JobSpec, JobState

__all__ = ["copier", "evolve_job", "maker", "mover"]

_FIELDS = tuple(a.name for a in attrs.fields(Job))
assert all(
    a.init and a.alias == a.name and a.validator is None and a.converter is None
    for a in attrs.fields(Job)
), "copies set slots directly: Job must keep plain fields"
_SETTERS: dict[str, Any] = {f"set_{name}": getattr(Job, name).__set__ for name in _FIELDS}
_copiers: dict[tuple[str, ...], Callable[..., Job]] = {}
_MAX_COPIERS = 256  # the engine uses a dozen; callers with odd sets of fields stay bounded


def _write(changed: tuple[str, ...], move: dict[str, Any] | None = None) -> Callable[..., Job]:
    # The text is built from Job's own field names (checked here) and fixed lines only.
    unknown = set(changed) - set(_FIELDS)
    if unknown:
        raise TypeError(f"Job has no field {sorted(unknown)[0]!r}")
    head = []
    if move is not None:  # a move: check the state, then set it (it is not an argument)
        head = ["    if job.state not in sources:", "        refuse(job, to)", "    state = to"]
    params = ", ".join(name for name in changed if move is None or name != "state")
    lines = [f"def copy_job(job, {params}):", *head, "    job2 = new(Job)"]
    lines += [
        f"    set_{name}(job2, {name if name in changed else 'job.' + name})" for name in _FIELDS
    ]
    lines.append("    return job2")
    namespace: dict[str, Any] = {"new": object.__new__, "Job": Job, **_SETTERS, **(move or {})}
    exec("\n".join(lines), namespace)
    function: Callable[..., Job] = namespace["copy_job"]
    return function


def copier(changed: tuple[str, ...]) -> Callable[..., Job]:
    """A function ``(job, *values)``: a copy of ``job`` with the ``changed`` fields set to
    ``values``, in that order.

    Raises:
        TypeError: a name in ``changed`` is not a field of ``Job``.
    """
    function = _copiers.get(changed)
    if function is None:
        function = _write(changed)
        if len(_copiers) < _MAX_COPIERS:
            _copiers[changed] = function
    return function


def evolve_job(job: Job, changes: dict[str, Any]) -> Job:
    """``attrs.evolve(job, **changes)``, faster."""
    return copier(tuple(changes))(job, *changes.values())


def mover(
    to: JobState,
    changed: tuple[str, ...],
    sources: Collection[JobState],
    refuse: Callable[[Job, JobState], None],
) -> Callable[..., Job]:
    """A function ``(job, *values)``: a copy of ``job`` in state ``to`` with the ``changed``
    fields set to ``values``, after ``refuse(job, to)`` (which must raise) when the job's state
    is not one of ``sources``. One call for a whole move of a job along its state table."""
    move = {"sources": frozenset(sources), "refuse": refuse, "to": to}
    return _write(("state", *changed), move)


def maker(fields: tuple[str, ...]) -> Callable[..., Job]:
    """A function ``(*values)``: a new job with ``fields`` set to ``values`` and every other
    field at its default, as ``Job(**dict(zip(fields, values)))`` makes it, faster.

    Raises:
        TypeError: a name in ``fields`` is not a field of ``Job``.
    """
    # a copy of a job made with the defaults: they are Job's own, whatever they become
    return functools.partial(copier(fields), Job(id="", spec=JobSpec()))
