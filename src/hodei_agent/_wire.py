"""The agent protocol's JSON at the agent's edge, with a private cattrs converter: answers in
(jobs, workers, instructions) and reports out (registration, log chunks, outcomes).

Answers are read strictly (a string is not a number, ``true`` is not ``1``, a missing field is
an error) but fields the agent does not know are ignored, so that a newer server can add to
its answers without breaking older agents.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, get_origin

import attrs
import cattrs
from cattrs.errors import IterableValidationError, IterableValidationNote

from hodei_core import Job, LogChunk, Outcome, Worker, WorkerRegistration
from hodei_core.errors import HodeiError
from hodei_core.ports import Instructions

__all__ = [
    "BadAnswer",
    "Registered",
    "chunks_json",
    "error_of",
    "finish_json",
    "heartbeat_from",
    "instructions_from",
    "registered_from",
    "registration_json",
    "report_json",
    "running_json",
    "start_json",
]

T = TypeVar("T")
Pairs = Iterable[tuple[str, int]]


class BadAnswer(HodeiError):
    """The server answered something this agent does not understand (a different version?)."""


@attrs.frozen
class _Pair:
    job_id: str
    attempt: int


@attrs.frozen
class Registered:
    """The answer to a registration: the worker, its token and the pace the server asks for."""

    worker: Worker
    token: str = attrs.field(repr=False)
    heartbeat_interval_s: float
    poll_wait_s: float
    lost_after_s: float


@attrs.frozen
class _Instructions:
    jobs: list[Job]
    cancel: list[_Pair]
    drain: bool


@attrs.frozen
class _Heartbeat:
    cancel: list[_Pair]
    drain: bool
    heartbeat_interval_s: float | None = None  # (servers before the pace could change)


def _strict(kind: type, check: Callable[[object], bool]) -> Callable[[object, Any], Any]:
    def hook(value: object, _: Any) -> Any:
        if not check(value):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return hook


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _make() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=False, detailed_validation=True)
    conv.register_structure_hook(str, _strict(str, lambda v: isinstance(v, str)))
    conv.register_structure_hook(bool, _strict(bool, lambda v: isinstance(v, bool)))
    conv.register_structure_hook(
        int, _strict(int, lambda v: isinstance(v, int) and not isinstance(v, bool))
    )
    float_hook = _strict(float, _is_number)
    conv.register_structure_hook(float, lambda v, t: float(float_hook(v, t)))

    # cattrs would take a string for a sequence (character by character) and an object for
    # a dict of anything: JSON arrays and objects are required
    def is_sequence(t: Any) -> bool:
        return get_origin(t) in (list, tuple, frozenset)

    def structure_sequence(value: object, t: Any) -> Any:
        if not isinstance(value, list):
            raise TypeError(f"expected an array, got {type(value).__name__}")
        item_type = t.__args__[0]
        items, errors = [], []
        for i, item in enumerate(value):
            try:
                items.append(conv.structure(item, item_type))
            except Exception as exc:
                # the index, so that an error names its place: answer.jobs[2].attempt
                exc.__notes__ = [IterableValidationNote(f"@ index {i}", i, item_type)]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"while structuring {t!r}", errors, t)
        return get_origin(t)(items)

    conv.register_structure_hook_func(is_sequence, structure_sequence)

    def is_dict(t: Any) -> bool:
        return get_origin(t) is dict

    def structure_dict(value: object, t: Any) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {type(value).__name__}")
        key_type, value_type = t.__args__
        return {
            conv.structure(k, key_type): conv.structure(v, value_type) for k, v in value.items()
        }

    conv.register_structure_hook_func(is_dict, structure_dict)
    return conv


_converter = functools.cache(_make)  # built on first use: generating the hooks takes a while


def _structure(doc: object, cls: type[T], what: str) -> T:
    try:
        return _converter().structure(doc, cls)
    except Exception as exc:  # cattrs raises several kinds, all meaning "not what we expect"
        problems = "; ".join(cattrs.transform_error(exc, path="answer")[:3])
        raise BadAnswer(f"cannot read the server's {what}: {problems}") from None


def registered_from(doc: object) -> Registered:
    """The answer to ``POST /api/v1/workers``.

    Raises:
        BadAnswer: it is not one.
    """
    answer = _structure(doc, Registered, "registration answer")
    return attrs.evolve(answer, heartbeat_interval_s=_pace(answer.heartbeat_interval_s))


def _pace(interval_s: float) -> float:
    # whatever the server says, beat neither in a busy loop nor once in a blue moon
    return min(max(interval_s, 0.1), 600.0)


def instructions_from(doc: object) -> Instructions:
    """The answer to a poll.

    Raises:
        BadAnswer: it is not one.
    """
    wire = _structure(doc, _Instructions, "poll answer")
    cancel = frozenset((p.job_id, p.attempt) for p in wire.cancel)
    return Instructions(jobs=tuple(wire.jobs), cancel=cancel, drain=wire.drain)


def heartbeat_from(doc: object) -> Instructions:
    """The answer to a heartbeat (what to stop, whether to drain, the pace from now on).

    Raises:
        BadAnswer: it is not one.
    """
    wire = _structure(doc, _Heartbeat, "heartbeat answer")
    interval = wire.heartbeat_interval_s
    return Instructions(
        cancel=frozenset((p.job_id, p.attempt) for p in wire.cancel),
        drain=wire.drain,
        heartbeat_interval_s=None if interval is None else _pace(interval),
    )


def error_of(doc: object) -> tuple[str, str]:
    """``(code, message)`` of an error answer, as far as it can be read."""
    error = doc.get("error") if isinstance(doc, dict) else None
    if not isinstance(error, dict):
        return "", ""
    code, message = error.get("code"), error.get("message")
    return (code if isinstance(code, str) else ""), (message if isinstance(message, str) else "")


def running_json(pairs: Pairs) -> dict[str, Any]:
    """The body of a poll or a heartbeat: the attempts the worker runs."""
    return {
        "running": [{"job_id": job_id, "attempt": attempt} for job_id, attempt in sorted(pairs)]
    }


def registration_json(registration: WorkerRegistration, running: Pairs) -> dict[str, Any]:
    """The body of a registration; ``running`` are the attempts the agent still runs (when it
    registers again), which the server then leaves to it."""
    capacity: dict[str, Any] = {"slots": registration.capacity.slots}
    if registration.capacity.cpu is not None:
        capacity["cpu"] = registration.capacity.cpu
    if registration.capacity.memory_mb is not None:
        capacity["memory_mb"] = registration.capacity.memory_mb
    return {
        "name": registration.name,
        "labels": sorted(registration.labels),
        "capacity": capacity,
        "version": registration.version,
        "hostname": registration.hostname,
        **running_json(running),
    }


def chunks_json(chunks: Sequence[LogChunk]) -> list[dict[str, Any]]:
    """Log chunks as the server takes them."""
    out: list[dict[str, Any]] = _converter().unstructure(list(chunks), list[LogChunk])
    return out


def finish_json(attempt: int, outcome: Outcome, chunks: Sequence[LogChunk]) -> dict[str, Any]:
    """The body of a finish report."""
    return {
        "attempt": attempt,
        **_converter().unstructure(outcome, Outcome),
        "log_chunks": chunks_json(chunks),
    }


def start_json(job_id: str, attempt: int) -> dict[str, Any]:
    """A start report as a batch carries it."""
    return {"job_id": job_id, "attempt": attempt, "type": "start"}


def report_json(
    job_id: str, attempt: int, chunks: Sequence[LogChunk], outcome: Outcome | None
) -> dict[str, Any]:
    """A report as a batch carries it: output, or with ``outcome`` the attempt's end."""
    if outcome is None:
        return {"job_id": job_id, "attempt": attempt, "type": "logs", "chunks": chunks_json(chunks)}
    return {
        "job_id": job_id,
        "attempt": attempt,
        "type": "finish",
        **_converter().unstructure(outcome, Outcome),
        "chunks": chunks_json(chunks),
    }
