"""Every error leaves the server as ``{"error": {"code", "message", "details"}}``.

Domain errors map to a status here, in one table; the ASGI middleware at the bottom is the
last resort that turns anything unforeseen into a JSON 500 without details (and logs it).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hodei_core.errors import (
    BackendError,
    Conflict,
    HodeiError,
    InvalidTransition,
    JobAlreadyFinished,
    NotFound,
    Problem,
    QuotaExceeded,
    StaleAttempt,
    ValidationError,
)

__all__ = [
    "ApiError",
    "LastResort",
    "api_error_from",
    "error_json",
    "error_response",
    "http_exception_handler",
    "json_response",
]

log = logging.getLogger("hodei.http")


class ApiError(Exception):
    """An HTTP error with its JSON body: raised by handlers, answered by the endpoint wrapper.

    Args:
        status: the HTTP status.
        code: a stable, machine-readable word (``not_found``, ``invalid_request``…).
        message: one line for a person.
        details: for validation errors, each problem with its path.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Iterable[Problem] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = tuple(details)
        self.headers = dict(headers or {})


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response. ASCII-only output: a lone surrogate in stored text cannot break it, and
    NaN is refused (it is not JSON), which would show a bug rather than hide it."""
    body = json.dumps(data, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return Response(body, status, headers=dict(headers or {}), media_type="application/json")


def error_json(error: ApiError) -> dict[str, Any]:
    """What goes under ``"error"`` in an answer about ``error``."""
    return {
        "code": error.code,
        "message": error.message,
        "details": [{"path": p.path, "message": p.message} for p in error.details],
    }


def error_response(error: ApiError) -> Response:
    """The JSON response for ``error``."""
    return json_response({"error": error_json(error)}, error.status, error.headers)


def api_error_from(exc: HodeiError) -> ApiError:
    """The HTTP error for a domain or backend error."""
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, ValidationError):
        # "job spec is invalid (2 problems):\n  - …": the first line is the message.
        return ApiError(400, "invalid", str(exc).split(":\n", 1)[0], exc.problems)
    if isinstance(exc, StaleAttempt):
        return ApiError(409, "stale_attempt", str(exc))
    if isinstance(exc, JobAlreadyFinished):
        return ApiError(409, "already_finished", str(exc))
    if isinstance(exc, InvalidTransition):
        return ApiError(409, "invalid_transition", str(exc))
    if isinstance(exc, Conflict):
        return ApiError(409, "conflict", str(exc))
    if isinstance(exc, QuotaExceeded):
        retry = max(1, math.ceil(exc.retry_after_s))  # Retry-After is whole seconds
        return ApiError(429, "quota_exceeded", str(exc), headers={"Retry-After": str(retry)})
    if isinstance(exc, BackendError):
        # the cause (a driver's error) may name hosts or SQL: log it, do not send it
        log.warning("backend unavailable: %s", exc, exc_info=exc)
        return ApiError(
            503, "unavailable", "the server's storage or bus is unavailable; try again",
            headers={"Retry-After": "1"},
        )  # fmt: skip
    log.error("unexpected domain error: %r", exc, exc_info=exc)
    return ApiError(500, "internal", "internal server error")


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, method not allowed) in the JSON shape."""
    assert isinstance(exc, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed"}
    message = {404: f"no such endpoint: {request.url.path}"}.get(exc.status_code, exc.detail)
    error = ApiError(
        exc.status_code, codes.get(exc.status_code, "error"), message, headers=exc.headers
    )
    return error_response(error)


class LastResort:
    """ASGI middleware: whatever escapes the app becomes a JSON 500 (if nothing was sent yet)
    and is logged; never a traceback to the client, never a dropped connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # too late for a clean answer: let the server close the connection
            response = error_response(ApiError(500, "internal", "internal server error"))
            await response(scope, receive, send)
