"""URL schemes → adapters: schemes registered in code or by entry points, the errors for unknown
schemes and missing drivers, and ``redact_url``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hodei_backends import (
    MemoryEventBus,
    MemoryStore,
    UnknownScheme,
    _registry,
    open_bus,
    open_store,
    redact_url,
    register_bus,
    register_store,
)

BUILTIN_STORES = "memory, postgresql, postgresql+psycopg, sqlite"
BUILTIN_BUSES = "memory, nats"


class FakeEntryPoint:
    """What ``importlib.metadata.entry_points`` yields, as far as the registry uses it."""

    def __init__(self, name: str, value: object) -> None:
        self.name = name
        self.value = value
        self.loads = 0

    def load(self) -> object:
        self.loads += 1
        return self.value


EntryPoints = Callable[[dict[str, list[FakeEntryPoint]]], None]


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> EntryPoints:
    """Installs the given entry points, by group, in place of the installed ones; schemes
    registered or loaded during the test are forgotten after it."""
    monkeypatch.setattr(_registry, "_stores", dict(_registry._stores))
    monkeypatch.setattr(_registry, "_buses", dict(_registry._buses))

    def install(groups: dict[str, list[FakeEntryPoint]]) -> None:
        def fake_entry_points(*, group: str) -> Iterable[FakeEntryPoint]:
            return groups.get(group, [])

        monkeypatch.setattr(_registry, "entry_points", fake_entry_points)

    install({})
    return install


B = TypeVar("B")


def opener_of(backend: B, seen: list[str]) -> _registry.Opener[B]:
    """An opener that gives ``backend`` for every URL, noting the URLs in ``seen``."""

    @asynccontextmanager
    async def opener(url: str) -> AsyncIterator[B]:
        seen.append(url)
        yield backend

    return opener


async def test_a_registered_store_scheme_opens_through_open_store(
    entry_points: EntryPoints,
) -> None:
    store = MemoryStore()
    seen: list[str] = []
    register_store("acme", opener_of(store, seen))
    async with open_store("acme://db.example/hodei?x=1") as opened:
        assert opened is store
    assert seen == ["acme://db.example/hodei?x=1"]


async def test_a_registered_bus_scheme_opens_through_open_bus(entry_points: EntryPoints) -> None:
    bus = MemoryEventBus()
    seen: list[str] = []
    register_bus("acme", opener_of(bus, seen))
    async with open_bus("acme://broker:1234") as opened:
        assert opened is bus
    assert seen == ["acme://broker:1234"]


async def test_schemes_from_entry_points_are_found_in_their_own_group(
    entry_points: EntryPoints,
) -> None:
    store, bus = MemoryStore(), MemoryEventBus()
    seen: list[str] = []
    store_entry = FakeEntryPoint("acme", opener_of(store, seen))
    bus_entry = FakeEntryPoint("wire", opener_of(bus, seen))
    entry_points({"hodei.stores": [store_entry], "hodei.buses": [bus_entry]})
    for _ in range(2):
        async with open_store("acme://a") as opened_store, open_bus("wire://b") as opened_bus:
            assert (opened_store, opened_bus) == (store, bus)
    assert seen == ["acme://a", "wire://b"] * 2
    assert (store_entry.loads, bus_entry.loads) == (1, 1)  # loaded once, then remembered
    with pytest.raises(UnknownScheme, match="unknown bus scheme 'acme'"):
        open_bus("acme://a")  # a store is no bus


def test_an_unknown_scheme_lists_the_known_ones(entry_points: EntryPoints) -> None:
    with pytest.raises(UnknownScheme) as caught:
        open_store("mongodb://u:pw@h/db")
    assert str(caught.value) == f"unknown store scheme 'mongodb'; known: {BUILTIN_STORES}"
    with pytest.raises(UnknownScheme) as caught:
        open_bus("kafka://h:9092")
    assert str(caught.value) == f"unknown bus scheme 'kafka'; known: {BUILTIN_BUSES}"


def test_the_known_schemes_include_registered_ones_and_entry_points(
    entry_points: EntryPoints,
) -> None:
    entry_points({"hodei.stores": [FakeEntryPoint("zeta", None)]})
    register_store("acme", opener_of(MemoryStore(), []))
    with pytest.raises(UnknownScheme) as caught:
        open_store("mongodb://h/db")
    assert str(caught.value) == (
        "unknown store scheme 'mongodb'; known: acme, memory, postgresql, "
        "postgresql+psycopg, sqlite, zeta"
    )


def test_a_url_without_a_scheme_says_what_one_looks_like(entry_points: EntryPoints) -> None:
    with pytest.raises(UnknownScheme) as caught:
        open_store("hodei.db")
    assert str(caught.value) == "store URL 'hodei.db' has no scheme (like 'memory://')"
    # libpq's keywords where a URL belongs: their secrets are not repeated
    with pytest.raises(UnknownScheme) as caught:
        open_store("host=db user=u password=hunter2")
    assert "hunter2" not in str(caught.value)
    assert "password=***" in str(caught.value)


def uninstall(monkeypatch: pytest.MonkeyPatch, missing: str, importer: str | None) -> None:
    """Make ``import missing`` fail as it does when it is not installed, and have ``importer``
    (a package that imports it) imported again on next use; both are back after the test."""
    if importer is not None:
        importlib.import_module(importer)  # loads its modules, so that all are restored
    for name in list(sys.modules):
        if name.startswith(f"{missing}.") or (
            importer is not None and (name == importer or name.startswith(f"{importer}."))
        ):
            monkeypatch.delitem(sys.modules, name)
    # None in sys.modules makes an import raise ModuleNotFoundError
    monkeypatch.setitem(sys.modules, missing, None)


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        # psycopg comes with the postgres extra only: [sql] would not be enough
        ("postgresql+psycopg://hodei:pw@db.example/hodei", "postgres"),
        ("postgresql://hodei:pw@db.example/hodei", "postgres"),
        ("sqlite:///hodei.db", "sql"),
    ],
)
def test_a_sql_store_without_sqlalchemy_names_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, url: str, extra: str
) -> None:
    uninstall(monkeypatch, "sqlalchemy", importer="hodei_backends.sql")
    with pytest.raises(UnknownScheme) as caught:
        open_store(url)
    scheme = url.partition("://")[0]
    assert str(caught.value) == (
        f"store scheme {scheme!r} needs an extra: pip install 'hodei-pipelines[{extra}]'"
    )


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "postgresql"])
async def test_a_postgresql_store_without_psycopg_names_the_postgres_extra(
    monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    uninstall(monkeypatch, "psycopg", importer=None)
    with pytest.raises(UnknownScheme) as caught:
        # nothing listens on port 1: the driver is missed before any connection is tried
        async with open_store(f"{scheme}://hodei:pw@127.0.0.1:1/hodei"):
            pytest.fail("opened a PostgreSQL store without psycopg")
    assert str(caught.value) == (
        "the PostgreSQL store needs psycopg: pip install 'hodei-pipelines[postgres]'"
    )


def test_a_nats_bus_without_nats_py_names_the_nats_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    uninstall(monkeypatch, "nats", importer="hodei_backends.nats")
    with pytest.raises(UnknownScheme) as caught:
        open_bus("nats://127.0.0.1:4222")
    assert (
        str(caught.value) == "bus scheme 'nats' needs an extra: pip install 'hodei-pipelines[nats]'"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:hunter2@h/db", "postgresql://u:***@h/db"),
        # SQLAlchemy takes a password with / or @ in it as it is
        ("postgresql://u:pa/ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql+psycopg://u:p@ss@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
        ("nats://s3cr3t-t0ken@nats.example:4222", "nats://***@nats.example:4222"),
        ("nats://u:pw@a:4222,nats://u:pw@b:4222", "nats://u:***@a:4222,nats://u:***@b:4222"),
        ("nats://t0ken1@a:4222,t0ken2@b:4222", "nats://***@a:4222,***@b:4222"),
        # a list of servers with spaces after its commas, as NATS takes it
        ("nats://u:pw@a, u2:pw2@b", "nats://u:***@a, u2:***@b"),
        ("nats://u:pw@a,  t0ken@b, nats://c", "nats://u:***@a,  ***@b, nats://c"),
        # text after a URL, with another URL in it
        (
            "postgresql://u:pw@h/db, then nats://t:pw@n",
            "postgresql://u:***@h/db, then nats://t:***@n",
        ),
        (
            "postgresql://u@h/db?sslmode=require&password=pw&sslpassword=kpw",
            "postgresql://u@h/db?sslmode=require&password=***&sslpassword=***",
        ),
        ("acme://h/?token=t&Secret=s&api_key=k", "acme://h/?token=***&Secret=***&api_key=***"),
        (
            "open failed on postgresql://u:pw@h/db: FATAL: no role x@y",
            "open failed on postgresql://u:***@h/db: FATAL: no role x@y",
        ),
        # nothing secret: unchanged
        ("sqlite:///var/lib/a@b.db", "sqlite:///var/lib/a@b.db"),
        ("postgresql://hodei@h/db?sslmode=require", "postgresql://hodei@h/db?sslmode=require"),
        ("nats://a:4222,b:4222?subject_prefix=ci.", "nats://a:4222,b:4222?subject_prefix=ci."),
        ("memory://", "memory://"),
    ],
)
def test_redact_url_hides_passwords_tokens_and_secret_parameters(url: str, shown: str) -> None:
    assert redact_url(url) == shown


SQL_SCHEMES = ["postgresql", "postgresql+psycopg", "sqlite", "mysql+pymysql", "acme"]
NATS_SCHEMES = ["nats", "tls", "ws", "wss"]
_PLAIN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
users = st.text(_PLAIN + "_.-", min_size=1, max_size=8)
hosts = st.text(_PLAIN.lower() + ".-", min_size=1, max_size=12)
ports = st.just("") | st.integers(1, 65535).map(lambda port: f":{port}")
paths = st.just("") | st.text(_PLAIN + "/._-", max_size=12).map(lambda path: f"/{path}")
queries = st.just("") | st.lists(
    st.tuples(
        st.sampled_from(["sslmode", "application_name", "connect_timeout", "subject_prefix"]),
        st.text(_PLAIN + "._-", max_size=8),
    ),
    min_size=1,
    max_size=3,
).map(lambda pairs: "?" + "&".join(f"{name}={value}" for name, value in pairs))


def secrets(exclude: str = "") -> st.SearchStrategy[str]:
    # Anything but whitespace (which ends a URL in a text) and '*' (a password of stars would
    # be "in" the redacted URL); non-trivial, so that finding it means it leaked.
    return st.text(
        st.characters(blacklist_categories=("Z", "C"), blacklist_characters="*" + exclude),
        min_size=4,
        max_size=16,
    )


@given(
    scheme=st.sampled_from(SQL_SCHEMES + NATS_SCHEMES),
    user=users,
    password=secrets(),
    where=st.tuples(hosts, ports, paths, queries).map("".join),
)
def test_a_password_never_shows(scheme: str, user: str, password: str, where: str) -> None:
    if scheme in NATS_SCHEMES:
        assume("," not in password)  # Hodei splits a NATS URL into servers at commas
    assume(password not in f"{scheme}://{user}:@{where}")
    shown = redact_url(f"{scheme}://{user}:{password}@{where}")
    assert password not in shown
    if "=" not in password:  # else it may read as a secret parameter too, and hide more
        assert shown == f"{scheme}://{user}:***@{where}"


@given(scheme=st.sampled_from(NATS_SCHEMES), token=secrets(exclude=",:/"), where=hosts)
def test_a_nats_token_never_shows(scheme: str, token: str, where: str) -> None:
    assume(token not in f"{scheme}://@{where}")
    assert redact_url(f"{scheme}://{token}@{where}:4222") == f"{scheme}://***@{where}:4222"


@given(
    scheme=st.sampled_from(SQL_SCHEMES + NATS_SCHEMES),
    where=st.tuples(hosts, ports, paths).map("".join),
    name=st.sampled_from(["password", "sslpassword", "PASSWORD", "token", "auth_token", "secret"]),
    value=secrets(exclude="&"),
)
def test_a_secret_query_parameter_never_shows(
    scheme: str, where: str, name: str, value: str
) -> None:
    url = f"{scheme}://{where}?sslmode=require&{name}={{}}&connect_timeout=3"
    assume(value not in url.format(""))
    assert value not in redact_url(url.format(value))


@given(
    scheme=st.sampled_from(SQL_SCHEMES + NATS_SCHEMES),
    user=st.just("") | users.map(lambda user: f"{user}@"),
    where=st.tuples(hosts, ports, paths, queries).map("".join),
)
def test_a_url_without_secrets_is_unchanged(scheme: str, user: str, where: str) -> None:
    if scheme in NATS_SCHEMES:
        user = ""  # NATS takes a user name without a password for a token
    url = f"{scheme}://{user}{where}"
    assert redact_url(url) == url
