"""Fixtures of the HTTP server's tests: an engine on memory adapters, the app over it, and
clients that talk to the app through httpx's ASGI transport (real HTTP semantics, no socket)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trio
from starlette.applications import Starlette

from hodei_backends import MemoryEventBus, MemoryStore
from hodei_core import Hodei, TenantQuota
from hodei_http import ServerSettings, TenantSettings, create_app
from hodei_http._settings import hash_token

ACME = "acme-token-0123456789"
GLOBEX = "globex-token-0123456789"
AGENT = "agent-token-0123456789"


def auth(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def make_settings(**changes: Any) -> ServerSettings:
    """Settings with two tenants (acme limited to 3 submissions a minute) and the agent token."""
    tenants = (
        TenantSettings(
            name="acme", token_sha256=hash_token(ACME), quota=TenantQuota(submit_rate=3)
        ),
        TenantSettings(name="globex", token_sha256=hash_token(GLOBEX)),
    )
    values: dict[str, Any] = {
        "port": 0,
        "store": "memory://",
        "bus": "memory://",
        "agent_token_sha256": hash_token(AGENT),
        "tenants": tenants,
        "secret": b"s" * 32,
        "max_body_bytes": 64 * 1024,
    }
    values.update(changes)
    return ServerSettings(**values)


@pytest.fixture
def settings() -> ServerSettings:
    return make_settings()


@pytest.fixture
async def hodei(nursery: trio.Nursery, settings: ServerSettings) -> Hodei:
    """An engine on memory adapters, its loops running."""
    engine = Hodei(store=MemoryStore(), bus=MemoryEventBus(), quotas=settings.quotas)
    await nursery.start(engine.run)
    return engine


@pytest.fixture
def app(hodei: Hodei, settings: ServerSettings) -> Starlette:
    return create_app(hodei, settings)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client without credentials (pass ``headers=auth(...)``)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hodei.test") as c:
        yield c


@pytest.fixture
async def acme(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the tenant acme."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://hodei.test", headers=auth(ACME)
    ) as c:
        yield c


@pytest.fixture
async def globex(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the tenant globex."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://hodei.test", headers=auth(GLOBEX)
    ) as c:
        yield c


Register = Callable[..., Any]


@pytest.fixture
def register(client: httpx.AsyncClient) -> Register:
    """Register a worker; returns ``(worker_id, headers with its token)``."""

    async def register(name: str = "w1", **body: Any) -> tuple[str, dict[str, str]]:
        response = await client.post(
            "/api/v1/workers", json={"name": name, **body}, headers=auth(AGENT)
        )
        assert response.status_code in (200, 201), response.text
        data = response.json()
        return data["worker"]["id"], auth(data["token"])

    return register
