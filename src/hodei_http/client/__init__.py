"""A client of a Hodei server's users' API (``HodeiClient``), and the ``hodei`` commands built
on it (``submit``, ``pipelines``, ``jobs``, ``logs``, ``workers``).

Names are loaded on first use: the ``hodei`` command imports the command modules below this
package to build its parser, and must not import httpx for that.

Example::

    async with HodeiClient("http://127.0.0.1:8080", token) as client:
        job = await client.submit_job({"command": ["make", "test"]})
        async for event in client.stream_logs(job["id"]):
            ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._client import ApiError, ApiProblem, HodeiClient, Page, ServerUnreachable
    from ._sse import SseEvent, SseParser

__all__ = [
    "ApiError",
    "ApiProblem",
    "HodeiClient",
    "Page",
    "ServerUnreachable",
    "SseEvent",
    "SseParser",
]

_WHERE = {
    "ApiError": "._client",
    "ApiProblem": "._client",
    "HodeiClient": "._client",
    "Page": "._client",
    "ServerUnreachable": "._client",
    "SseEvent": "._sse",
    "SseParser": "._sse",
}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__, globals())
