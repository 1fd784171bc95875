"""Reading what a request carries: a body within the size limit, JSON or YAML, query values.

Everything here answers bad input with an ``ApiError`` (4xx) that says what is wrong: a body
over the limit (413, counted while reading, so a chunked body cannot get past it), a content
type the endpoint does not take (415), text that is not UTF-8 or not JSON (400).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from contextlib import aclosing
from typing import TypeVar

from starlette.requests import Request

from hodei_core.errors import Problem

from ._errors import ApiError

__all__ = [
    "JSON_TYPES",
    "YAML_TYPES",
    "check_media_type",
    "check_query",
    "decode_text",
    "media_type",
    "parse_json",
    "query_float",
    "query_int",
    "query_value",
    "read_body",
    "text_problems",
]

T = TypeVar("T")

JSON_TYPES = frozenset({"application/json"})
YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})


def media_type(request: Request) -> str:
    """The request's media type, lower case, without parameters ("" when none is given)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def check_media_type(request: Request, accepted: Iterable[str]) -> str:
    """The request's media type if the endpoint takes it (none given counts as JSON).

    Raises:
        ApiError: 415 naming the accepted types.
    """
    accepted = sorted(accepted)
    kind = media_type(request) or "application/json"
    if kind in accepted or (kind.endswith("+json") and "application/json" in accepted):
        return kind
    raise ApiError(
        415,
        "unsupported_media_type",
        f"content type {kind!r} is not accepted here; use {' or '.join(accepted)}",
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing it as soon as it is known to be over ``limit`` bytes.

    Raises:
        ApiError: 413 when the body is larger than ``limit``.
    """
    too_large = ApiError(
        413, "body_too_large", f"the request body is larger than the limit of {limit} bytes"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    parts: list[bytes] = []
    size = 0
    # closed explicitly: leaving it half-read for the garbage collector would warn
    async with aclosing(request.stream()) as stream:
        async for part in stream:
            size += len(part)
            if size > limit:
                raise too_large
            parts.append(part)
    return b"".join(parts)


def decode_text(body: bytes) -> str:
    """The body as UTF-8 text.

    Raises:
        ApiError: 400 when it is not UTF-8.
    """
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            400, "malformed_body", f"the request body is not UTF-8 text (byte {exc.start})"
        ) from None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(body: bytes, *, nul_ok: bool = False) -> object:
    """The JSON document in ``body``.

    Args:
        body: the request body.
        nul_ok: whether strings may hold NUL characters (a job's output may; names, commands
            and the like may not: no OS argument and not every database column can hold one).

    Raises:
        ApiError: 400 for text that is not UTF-8, not JSON (with line and column), nested
            too deeply, or holds NaN/Infinity or text no UTF-8 can carry (lone surrogates).
    """
    text = decode_text(body)
    try:
        doc: object = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        message = f"malformed JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        raise ApiError(400, "malformed_body", message) from None
    except ValueError as exc:  # NaN, or an integer of more than 4300 digits
        raise ApiError(400, "malformed_body", f"malformed JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "malformed_body", "malformed JSON: nested too deeply") from None
    problems = text_problems(doc, nul_ok=nul_ok)
    if problems:
        raise ApiError(400, "invalid", "the request body holds invalid text", problems)
    return doc


def text_problems(doc: object, *, nul_ok: bool = False) -> list[Problem]:
    """Strings (and keys) in ``doc`` that are not valid Unicode text, such as a JSON
    ``"\\ud800"`` (every store and every response must be able to encode what is stored),
    or that hold a NUL character, unless ``nul_ok``."""
    problems: list[Problem] = []
    stack: list[tuple[object, str]] = [(doc, "")]
    while stack:  # iterative: a deep document must not exhaust the stack here either
        value, path = stack.pop()
        if isinstance(value, str):
            if not nul_ok and "\0" in value:
                problems.append(Problem(path, "must not contain a NUL character"))
            elif not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    problems.append(Problem(path, "not valid Unicode text (lone surrogate)"))
        elif isinstance(value, Mapping):
            for key, item in value.items():
                at = f"{path}.{key}" if path else str(key)
                stack.append((key, path))
                stack.append((item, at))
        elif isinstance(value, list | tuple):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
    return problems


def check_query(request: Request, allowed: Iterable[str]) -> None:
    """Refuse query parameters the endpoint does not know (a typo should not pass silently).

    Raises:
        ApiError: 400 naming each unknown parameter.
    """
    allowed = set(allowed)
    unknown = sorted({key for key in request.query_params if key not in allowed})
    if unknown:
        hint = f"allowed: {', '.join(sorted(allowed))}" if allowed else "none is allowed"
        problems = [Problem(key, f"unknown query parameter; {hint}") for key in unknown]
        raise ApiError(400, "invalid", "unknown query parameters", problems)


def query_value(request: Request, name: str, parse: Callable[[str], T], default: T, what: str) -> T:
    """The query parameter ``name`` parsed by ``parse`` (which raises ValueError), or
    ``default`` when absent.

    Raises:
        ApiError: 400 saying what was expected.
    """
    values = request.query_params.getlist(name)
    if not values:
        return default
    if len(values) > 1:
        raise ApiError(400, "invalid", "bad query parameter", [Problem(name, "give it once")])
    try:
        return parse(values[0])
    except (ValueError, OverflowError):
        problem = Problem(name, f"expected {what}, got {values[0][:40]!r}")
        raise ApiError(400, "invalid", "bad query parameter", [problem]) from None


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter from ``low`` to ``high``.

    Raises:
        ApiError: 400 for anything else.
    """

    def parse(text: str) -> int:
        # int() would take " 7", "+7" and "7_000": a query value is plain digits
        if not text.isascii() or not text.lstrip("-").isdigit() or len(text) > 20:
            raise ValueError(text)
        value = int(text)
        if not low <= value <= high:
            raise ValueError(text)
        return value

    return query_value(request, name, parse, default, f"an integer from {low} to {high}")


def query_float(request: Request, name: str, default: float, low: float, high: float) -> float:
    """A number query parameter from ``low`` to ``high``.

    Raises:
        ApiError: 400 for anything else.
    """

    def parse(text: str) -> float:
        value = float(text)
        if not math.isfinite(value) or not low <= value <= high:
            raise ValueError(text)
        return value

    return query_value(request, name, parse, default, f"a number from {low:g} to {high:g}")
