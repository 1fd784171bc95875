"""URL schemes → adapters: ``open_store("memory://")``, ``open_bus("nats://…")``.

Only this package knows URLs. Third-party backends add a scheme with ``register_store`` /
``register_bus``, or with an entry point in the ``hodei.stores`` / ``hodei.buses`` group whose
object is an async-context-manager factory taking the URL.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib.metadata import entry_points
from typing import TypeVar

from hodei_core.errors import HodeiError
from hodei_core.ports import EventBus, Store

from .memory import MemoryEventBus, MemoryStore

__all__ = [
    "UnknownScheme",
    "open_bus",
    "open_store",
    "redact_url",
    "register_bus",
    "register_store",
]

T = TypeVar("T")
Opener = Callable[[str], AbstractAsyncContextManager[T]]


class UnknownScheme(HodeiError):
    """No adapter is registered for a URL's scheme (the message lists the known ones), or its
    driver is not installed (the message says what to install)."""


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit for logs and reprs."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", url)


@asynccontextmanager
async def _memory_store(url: str) -> AsyncIterator[MemoryStore]:
    yield MemoryStore()


@asynccontextmanager
async def _memory_bus(url: str) -> AsyncIterator[MemoryEventBus]:
    yield MemoryEventBus()


def _nats_bus(url: str) -> AbstractAsyncContextManager[EventBus]:
    try:
        from .nats import open_nats_bus  # noqa: PLC0415 - nats-py is an optional extra
    except ModuleNotFoundError as exc:
        if exc.name != "nats":
            raise
        raise UnknownScheme(
            "bus scheme 'nats' needs an extra: pip install 'hodei-pipelines[nats]'"
        ) from exc
    return open_nats_bus(url)


def _sql_store(url: str) -> AbstractAsyncContextManager[Store]:
    try:
        from .sql import open_sql_store  # noqa: PLC0415 - keep `import hodei_backends` light
    except ImportError as exc:
        scheme = url.partition("://")[0]
        raise UnknownScheme(
            f"store scheme {scheme!r} needs an extra: pip install 'hodei-pipelines[sql]'"
        ) from exc
    return open_sql_store(url)


_stores: dict[str, Opener[Store]] = {
    "memory": _memory_store,
    "sqlite": _sql_store,
    "postgresql": _sql_store,
    "postgresql+psycopg": _sql_store,
}
_buses: dict[str, Opener[EventBus]] = {"memory": _memory_bus, "nats": _nats_bus}
# schemes whose adapters ship with Hodei but need an extra installed
_EXTRAS = {
    "sqlite": "sql",
    "postgresql": "postgres",
    "postgresql+psycopg": "postgres",
    "nats": "nats",
}


def register_store(scheme: str, opener: Opener[Store]) -> None:
    """Make ``open_store`` use ``opener(url)`` for URLs of ``scheme``."""
    _stores[scheme] = opener


def register_bus(scheme: str, opener: Opener[EventBus]) -> None:
    """Make ``open_bus`` use ``opener(url)`` for URLs of ``scheme``."""
    _buses[scheme] = opener


def _resolve(kind: str, url: str, table: dict[str, Opener[T]], group: str) -> Opener[T]:
    scheme, sep, _ = url.partition("://")
    if not sep:
        raise UnknownScheme(f"{kind} URL {redact_url(url)!r} has no scheme (like 'memory://')")
    opener = table.get(scheme)
    if opener is not None:
        return opener
    for entry in entry_points(group=group):
        if entry.name == scheme:
            loaded: Opener[T] = entry.load()
            table[scheme] = loaded
            return loaded
    if scheme in _EXTRAS:
        raise UnknownScheme(
            f"{kind} scheme {scheme!r} needs an extra: "
            f"pip install 'hodei-pipelines[{_EXTRAS[scheme]}]'"
        )
    known = sorted({*table, *(e.name for e in entry_points(group=group))})
    raise UnknownScheme(f"unknown {kind} scheme {scheme!r}; known: {', '.join(known)}")


def open_store(url: str) -> AbstractAsyncContextManager[Store]:
    """Open the store at ``url``; closing the context closes it.

    Raises:
        UnknownScheme: no adapter for the scheme, or its driver is missing.
    """
    return _resolve("store", url, _stores, "hodei.stores")(url)


def open_bus(url: str) -> AbstractAsyncContextManager[EventBus]:
    """Open the event bus at ``url``; closing the context closes it.

    Raises:
        UnknownScheme: no adapter for the scheme, or its driver is missing.
    """
    return _resolve("bus", url, _buses, "hodei.buses")(url)
