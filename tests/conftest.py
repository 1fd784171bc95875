"""Fixtures shared by the test suite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hodei_backends import open_embedded
from hodei_core import Hodei
from hodei_core.testing import ManualExecutor, trio_wall_clock
from hodei_core.worker import WorkerSettings

from ._nats_server import NatsServer
from ._postgres_server import PostgresServer, shared_postgres

# Timers short enough that an autojump_clock test spends few jumps on them.
FAST = WorkerSettings(heartbeat_interval_s=1.0, poll_timeout_s=5.0, log_flush_interval_s=0.05)


@pytest.fixture
def manual() -> ManualExecutor:
    """An executor whose jobs end when the test says so."""
    return ManualExecutor()


@pytest.fixture
async def engine(manual: ManualExecutor) -> AsyncIterator[Hodei]:
    """An embedded engine with two 2-slot workers running ``manual`` jobs, on trio's clock."""
    async with open_embedded(
        workers=2,
        slots=2,
        executor=manual,
        clock=trio_wall_clock,
        worker_settings=FAST,
        lost_after_s=10.0,
    ) as hodei:
        yield hodei


# One server of each for the whole session, whichever modules use it.
@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session."""
    with shared_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server (with JetStream) for the session; a failure to start fails the tests."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.kill()


@pytest.fixture
def own_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server for one test only, which the test may kill and restart."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.kill()
