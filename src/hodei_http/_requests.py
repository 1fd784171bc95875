"""Agent request bodies as values, structured strictly with a private cattrs converter.

Unknown fields, missing ones, wrong types (``"1"`` is not an integer, ``true`` is not ``1``)
and out-of-range numbers are all refused, each problem with its path (``chunks[2].seq``). Job
specs and pipelines are parsed by ``hodei_backends._documents`` instead, which already says
what is wrong and where.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NewType, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn

from hodei_core import Capacity, LogChunk, Outcome, Stream, WorkerRegistration
from hodei_core.errors import Problem

from ._errors import ApiError

__all__ = [
    "EmptyRequest",
    "FinishRequest",
    "JobAttempt",
    "LogsRequest",
    "RegisterRequest",
    "Report",
    "ReportsRequest",
    "RunningRequest",
    "StartRequest",
    "WireCapacity",
    "WireChunk",
    "structure",
]

T = TypeVar("T")
_INT32 = 2**31
_INT63 = 2**63

# Numbers with a range: every store must be able to keep them (SQL INTEGER/BIGINT columns).
Attempt = NewType("Attempt", int)
Seq = NewType("Seq", int)
ExitCode = NewType("ExitCode", int)
Slots = NewType("Slots", int)
MemoryMb = NewType("MemoryMb", int)
Cpu = NewType("Cpu", float)
Timestamp = NewType("Timestamp", float)
Label = NewType("Label", str)
ShortText = NewType("ShortText", str)
ReportType = NewType("ReportType", str)

#: the most reports one batch may carry
MAX_REPORTS = 1000


class _Invalid(ValueError):
    """A value refused by a strict hook; the message is what the client reads."""


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:36] + "...")
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, int) and value.bit_length() > 64:
        return "a very large integer"
    return repr(value)


def _int(low: int, high: int) -> Callable[[object, Any], int]:
    def hook(value: object, _: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected an integer, got {_show(value)}")
        if not low <= value < high:
            raise _Invalid(f"must be an integer from {low} to {high - 1}, got {_show(value)}")
        return value

    return hook


def _float(low: float) -> Callable[[object, Any], float]:
    def hook(value: object, _: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(f"expected a number, got {_show(value)}")
        try:
            number = float(value)
        except OverflowError:
            raise _Invalid("number is too large") from None
        if not math.isfinite(number) or number < low:
            raise _Invalid(f"must be a finite number >= {low:g}, got {_show(value)}")
        return number

    return hook


def _str(max_length: int, *, blank: bool = True) -> Callable[[object, Any], str]:
    def hook(value: object, _: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid(f"expected a string, got {_show(value)}")
        if len(value) > max_length:
            raise _Invalid(f"must have at most {max_length} characters")
        if not blank and not value.strip():
            raise _Invalid("must not be blank")
        return value

    return hook


def _bool(value: object, _: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_show(value)}")
    return value


def _stream(value: object, _: Any) -> Stream:
    if isinstance(value, str):
        for stream in Stream:
            if stream.value == value:
                return stream
    raise _Invalid(f"expected 'stdout' or 'stderr', got {_show(value)}")


def _report_type(value: object, _: Any) -> ReportType:
    if value not in ("start", "logs", "finish"):
        raise _Invalid(f"expected 'start', 'logs' or 'finish', got {_show(value)}")
    return ReportType(str(value))


def _make_in() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(int, _int(-(2**63), 2**63))
    conv.register_structure_hook(float, _float(-math.inf))
    conv.register_structure_hook(str, _str(1 << 20))  # the body limit bounds it anyway
    conv.register_structure_hook(bool, _bool)
    conv.register_structure_hook(Stream, _stream)
    conv.register_structure_hook(Attempt, _int(1, _INT32))
    conv.register_structure_hook(Seq, _int(0, _INT63))
    conv.register_structure_hook(ExitCode, _int(-_INT32, _INT32))
    conv.register_structure_hook(Slots, _int(1, 100_001))
    conv.register_structure_hook(MemoryMb, _int(0, _INT32))
    conv.register_structure_hook(Cpu, _float(0.0))
    conv.register_structure_hook(Timestamp, _float(0.0))
    conv.register_structure_hook(Label, _str(200, blank=False))
    conv.register_structure_hook(ShortText, _str(200))
    conv.register_structure_hook(ReportType, _report_type)

    def is_list(t: Any) -> bool:
        return get_origin(t) is list

    def structure_list(value: object, t: Any) -> list[Any]:
        # cattrs would iterate a string character by character; a JSON array is required
        if not isinstance(value, list):
            raise _Invalid(f"expected an array, got {_show(value)}")
        (item_type,) = get_args(t)
        items: list[Any] = []
        errors: list[Exception] = []
        for i, item in enumerate(value):
            try:
                items.append(conv.structure(item, item_type))
            except Exception as exc:
                exc.__notes__ = [IterableValidationNote(f"@ index {i}", i, item_type)]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"while structuring {t!r}", errors, t)
        return items

    conv.register_structure_hook_func(is_list, structure_list)

    def attrs_factory(cls: type) -> Callable[[object, Any], Any]:
        inner: Callable[..., Any] = make_dict_structure_fn(
            cls, conv, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True
        )

        def hook(value: object, _: Any) -> Any:
            if not isinstance(value, dict):
                raise _Invalid(f"expected an object, got {_show(value)}")
            return inner(value, cls)

        return hook

    conv.register_structure_hook_factory(attrs.has, attrs_factory)
    return conv


def _problems(exc: BaseException, path: str, fields: tuple[str, ...]) -> list[Problem]:
    """Each problem in a cattrs error tree, with its path (``chunks[1].seq``)."""
    if isinstance(exc, IterableValidationError):
        with_notes, without = exc.group_exceptions()
        out = []
        for inner, note in with_notes:
            out += _problems(inner, f"{path}[{note.index}]", ())
        return out + [p for inner in without for p in _problems(inner, path, ())]
    if isinstance(exc, ClassValidationError):
        cls = exc.cl
        allowed = tuple(a.name for a in attrs.fields(cls)) if attrs.has(cls) else ()
        out = []
        for inner, class_note in exc.group_exceptions()[0]:
            at = f"{path}.{class_note.name}" if path else class_note.name
            out += _problems(inner, at, ())
        return out + [
            p for inner in exc.group_exceptions()[1] for p in _problems(inner, path, allowed)
        ]
    if isinstance(exc, ForbiddenExtraKeysError):
        hint = f"allowed: {', '.join(sorted(fields))}" if fields else "no field is allowed"
        return [
            Problem(f"{path}.{key}" if path else key, f"unknown field; {hint}")
            for key in sorted(exc.extra_fields)
        ]
    if isinstance(exc, KeyError):
        return [Problem(path, "required")]
    if isinstance(exc, _Invalid):
        return [Problem(path, str(exc))]
    return [Problem(path, "invalid value")]


_converter = functools.cache(_make_in)  # built on first use, once


def structure(doc: object, cls: type[T]) -> T:
    """``doc`` (parsed JSON) as a ``cls``, or a 400 listing every problem.

    Raises:
        ApiError: 400 with each problem and its path.
    """
    try:
        return _converter().structure(doc, cls)
    except (ClassValidationError, _Invalid) as exc:
        problems = _problems(exc, "", ())
        raise ApiError(400, "invalid", "the request body is invalid", problems) from None


@attrs.frozen
class EmptyRequest:
    """A body with no fields: ``{}`` (or nothing at all)."""


@attrs.frozen
class JobAttempt:
    """One attempt of a job a worker runs (or must stop)."""

    job_id: ShortText
    attempt: Attempt


@attrs.frozen
class RunningRequest:
    """The body of a heartbeat or a poll: the attempts the worker runs."""

    running: list[JobAttempt] = attrs.field(factory=list)

    def pairs(self) -> list[tuple[str, int]]:
        """``(job_id, attempt)`` pairs, as the core takes them."""
        return [(p.job_id, p.attempt) for p in self.running]


@attrs.frozen
class WireCapacity:
    """What a worker offers."""

    slots: Slots = Slots(1)
    cpu: Cpu | None = None
    memory_mb: MemoryMb | None = None


@attrs.frozen
class RegisterRequest:
    """The body of a registration."""

    name: ShortText
    labels: list[Label] = attrs.field(factory=list)
    capacity: WireCapacity = WireCapacity()
    version: ShortText = ShortText("")
    hostname: ShortText = ShortText("")
    # what an agent registering again (its token was forgotten) still runs: those jobs stay
    running: list[JobAttempt] = attrs.field(factory=list)

    def pairs(self) -> list[tuple[str, int]]:
        """``(job_id, attempt)`` pairs the agent still runs, as the core takes them."""
        return [(p.job_id, p.attempt) for p in self.running]

    def registration(self) -> WorkerRegistration:
        """The registration, as the core takes it."""
        capacity = Capacity(self.capacity.slots, self.capacity.cpu, self.capacity.memory_mb)
        return WorkerRegistration(
            name=self.name,
            labels=self.labels,
            capacity=capacity,
            version=self.version,
            hostname=self.hostname,
        )


@attrs.frozen
class StartRequest:
    """The body of a start report."""

    attempt: Attempt


@attrs.frozen
class WireChunk:
    """A log chunk as an agent sends it."""

    seq: Seq
    stream: Stream
    data: str
    ts: Timestamp = Timestamp(0.0)

    def chunk(self) -> LogChunk:
        """The chunk, as the core takes it."""
        return LogChunk(self.seq, self.stream, self.data, self.ts)


@attrs.frozen
class LogsRequest:
    """The body of a log report."""

    attempt: Attempt
    chunks: list[WireChunk]


@attrs.frozen
class FinishRequest:
    """The body of a finish report: how the attempt ended, and its last log chunks."""

    attempt: Attempt
    exit_code: ExitCode | None = None
    timed_out: bool = False
    cancelled: bool = False
    error: str | None = None
    log_chunks: list[WireChunk] = attrs.field(factory=list)

    def outcome(self) -> Outcome:
        """The outcome, as the core takes it."""
        return Outcome(self.exit_code, self.timed_out, self.cancelled, self.error)


@attrs.frozen
class Report:
    """One report in a batch: an attempt started, wrote output, or ended."""

    job_id: ShortText
    attempt: Attempt
    type: ReportType
    chunks: list[WireChunk] = attrs.field(factory=list)
    exit_code: ExitCode | None = None
    timed_out: bool = False
    cancelled: bool = False
    error: str | None = None

    def outcome(self) -> Outcome:
        """How the attempt ended (for a ``finish``), as the core takes it."""
        return Outcome(self.exit_code, self.timed_out, self.cancelled, self.error)

    def problems(self, path: str) -> list[Problem]:
        """What this report carries that its type does not take."""
        problems = []
        if self.type == "start" and self.chunks:
            problems.append(Problem(f"{path}.chunks", "a start report carries no output"))
        if self.type != "finish":
            ending = {
                "exit_code": self.exit_code is not None,
                "timed_out": self.timed_out,
                "cancelled": self.cancelled,
                "error": self.error is not None,
            }
            for name, given in ending.items():
                if given:
                    problems.append(Problem(f"{path}.{name}", "only a finish report says this"))
        return problems


@attrs.frozen
class ReportsRequest:
    """The body of a batch of reports: several attempts' starts, output and ends at once."""

    reports: list[Report]

    def check(self) -> None:
        """Refuse what the structure alone does not rule out.

        Raises:
            ApiError: 400 with every problem.
        """
        problems = [p for i, r in enumerate(self.reports) for p in r.problems(f"reports[{i}]")]
        if len(self.reports) > MAX_REPORTS:
            problems.append(Problem("reports", f"at most {MAX_REPORTS} reports in one batch"))
        if problems:
            raise ApiError(400, "invalid", "the request body is invalid", problems)
