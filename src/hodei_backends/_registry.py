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


# NATS reads a user name without a password as a token, and Hodei splits its URLs into
# servers at commas (so no NATS password holds one); other schemes' user names are just names.
_NATS_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# a URL runs from its scheme to the next whitespace, but a list of servers may go on after a
# comma and spaces (NATS takes "nats://a, b"): those are read too, and given back if not NATS
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://((?:[^\s,]|,\s*(?=[^\s,]))*,?)")
_SPACE = re.compile(r"\s")
# libpq-style keywords (host=… password=…) given where a URL belongs
_KEYWORD_SECRET = re.compile(r"((?:pass|pwd|secret|token)\w*\s*=\s*)(\S+)", re.IGNORECASE)
# query parameters that carry secrets: password, sslpassword, passwd, pwd, token, secret, ...
_SECRET_PARAM = re.compile(
    r"[?&][^&=\s]*(?:pass|pwd|secret|token|credential|api_?key)[^&=\s]*=([^&\s]*)",
    re.IGNORECASE,
)
_Span = tuple[int, int]


def redact_url(url: str) -> str:
    """``url`` with its secrets replaced by ``***``, fit for logs and reprs.

    Hidden: the password (``user:***@host``), a NATS user name without a password (a token:
    ``nats://***@host``), and the values of query parameters whose names speak of a password,
    token, secret, credential or API key. A password runs to the last ``@`` (of the URL, or of
    a NATS server), as passwords may hold ``/`` or ``@``; where a password and a parameter
    could be read in two ways, both readings are hidden: more than needed, never less. Works on
    any text: each URL in it, up to whitespace, is redacted.
    """
    return _URL.sub(_redact_one, url)


def _redact_one(match: re.Match[str]) -> str:
    scheme, rest = match[1], match[2]
    if scheme.lower() in _NATS_SCHEMES:
        spans: list[_Span] = []
        offset = 0
        for number, server in enumerate(rest.split(",")):
            # the servers after the first may repeat the scheme, or leave it out
            lead = len(server) - len(server.lstrip())
            repeated = _SCHEME.match(server, lead) if number else None
            skip = repeated.end() if repeated else lead
            spans += _credentials(server[skip:], offset + skip, token_user=True)
            offset += len(server) + 1
        tail = ""
    else:
        space = _SPACE.search(rest)
        # a list of servers is NATS's alone: after a space comes text, which may hold URLs
        rest, tail = (rest, "") if space is None else (rest[: space.start()], rest[space.start() :])
        spans = _credentials(rest, 0, token_user=False)
    spans += (param.span(1) for param in _SECRET_PARAM.finditer(rest))
    return f"{scheme}://{_masked(rest, spans)}{redact_url(tail)}"


def _credentials(rest: str, offset: int, *, token_user: bool) -> list[_Span]:
    """Where the password (or a token user) is in ``rest``, what follows ``scheme://``."""
    userinfo, at, _ = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not at or "/" in user:  # no credentials: any @ is in the path (sqlite:///a@b.db)
        return []
    if colon:
        return [(offset + len(user) + 1, offset + len(userinfo))]
    return [(offset, offset + len(userinfo))] if token_user else []


def _masked(text: str, spans: list[_Span]) -> str:
    """``text`` with each span, or each run of overlapping or touching spans, as ``***``."""
    shown: list[str] = []
    hidden_to = 0
    for start, end in sorted(spans):
        if start > hidden_to or not shown:
            shown += [text[hidden_to:start], "***"]
        hidden_to = max(hidden_to, end)
    return "".join([*shown, text[hidden_to:]])


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
        if (exc.name or "").partition(".")[0] != "nats":
            raise
        raise UnknownScheme(
            "bus scheme 'nats' needs an extra: pip install 'hodei-pipelines[nats]'"
        ) from exc
    return open_nats_bus(url)


def _sql_store(url: str) -> AbstractAsyncContextManager[Store]:
    try:
        from .sql import open_sql_store  # noqa: PLC0415 - keep `import hodei_backends` light
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in ("sqlalchemy", "alembic"):
            raise
        scheme = url.partition("://")[0]
        # the postgres extra brings SQLAlchemy and psycopg; sql alone has no PostgreSQL driver
        extra = _EXTRAS.get(scheme, "sql")
        raise UnknownScheme(
            f"store scheme {scheme!r} needs an extra: pip install 'hodei-pipelines[{extra}]'"
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
        shown = _KEYWORD_SECRET.sub(r"\1***", redact_url(url))
        raise UnknownScheme(f"{kind} URL {shown!r} has no scheme (like 'memory://')")
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
