"""The server's answers as the agent acts on them: "try later" (``Unavailable``), "this attempt
is not yours any more" (the domain's ``StaleAttempt``, ``JobAlreadyFinished``,
``JobNotFound``), or a refusal that trying again cannot fix (``Refused``)."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from hodei_core.errors import HodeiError, JobAlreadyFinished, JobNotFound, StaleAttempt

from ._retry import Unavailable
from ._wire import error_of

__all__ = ["Refused", "agent_version", "check", "check_result", "problem", "unavailable"]


class Refused(HodeiError):
    """The server refused a request for a reason that trying again cannot fix: a wrong agent
    token, or a malformed request (a bug)."""


def agent_version() -> str:
    """This agent's version, as it tells the server."""
    try:
        return version("hodei-pipelines")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def problem(response: httpx.Response, what: str) -> str:
    """One line about a refusal: ``what: 409 stale_attempt: <the server's message>``."""
    code, message = error_of(_body(response))
    detail = f" {code}" if code else ""
    return f"{what}: {response.status_code}{detail}: {message or response.reason_phrase}"


def unavailable(exc: httpx.TransportError | None, response: httpx.Response | None) -> Unavailable:
    """The ``Unavailable`` for a request that got no answer, or one saying "later"."""
    if response is None:
        assert exc is not None
        text = str(exc)
        return Unavailable(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
    try:
        retry_after: float | None = max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        retry_after = None
    return Unavailable(problem(response, str(response.url.path)), retry_after)


def _gone(status: int, doc: object, job_id: str, attempt: int) -> HodeiError | None:
    code, message = error_of(doc)
    error: HodeiError
    if status == 404:
        error = JobNotFound(job_id)
    elif status == 409 and code == "already_finished":
        state = re.search(r"\((\w+)\)$", message)
        error = JobAlreadyFinished(job_id, state.group(1) if state else "finished")
    elif status == 409:
        current = re.search(r"current attempt is (\d+)", message)
        error = StaleAttempt(job_id, attempt, int(current.group(1)) if current else attempt)
        if message:
            error.args = (message,)  # the server knows why: keep its words
    else:
        return None
    return error


def check(response: httpx.Response, what: str, job: tuple[str, int] | None = None) -> Any:
    """The answer's body (parsed JSON, or None), if it is a success.

    Raises:
        StaleAttempt, JobAlreadyFinished, JobNotFound: a 409 or 404 about the attempt
            ``job``: it is not this worker's any more.
        Refused: any other refusal.
    """
    if response.status_code < 300:
        return _body(response)
    if job is not None:
        gone = _gone(response.status_code, _body(response), *job)
        if gone is not None:
            raise gone
    raise Refused(problem(response, what))


def check_result(status: int, doc: object, what: str, job: tuple[str, int]) -> Exception:
    """The error for one refused report in a batch: its ``status`` and ``doc`` (the result,
    with its ``error``) are what the report's own endpoint would have answered."""
    if status >= 500 or status == 429:
        return Unavailable(f"{what}: {status}")
    gone = _gone(status, doc, *job)
    if gone is not None:
        return gone
    code, message = error_of(doc)
    return Refused(f"{what}: {status}{f' {code}' if code else ''}: {message}")
