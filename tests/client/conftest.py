"""Fixtures of the client commands' tests: a real server on a loopback port (hypercorn over
the stock app) whose engine runs jobs with an in-process worker and real processes, and a
way to run a command's handler as ``hodei`` would, with its output captured."""

from __future__ import annotations

import argparse
import io
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from types import ModuleType
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from hodei_backends import open_embedded
from hodei_core import TenantQuota
from hodei_core.worker import WorkerSettings
from hodei_http import ServerSettings, TenantSettings, create_app
from hodei_http._settings import hash_token
from hodei_http.client import HodeiClient
from hodei_http.client._commands import jobs, logs, pipelines, submit, workers

ACME = "acme-token-0123456789"
TINY = "tiny-token-0123456789"  # a tenant allowed one submission a minute
AGENT = "agent-token-0123456789"

COMMANDS: dict[str, ModuleType] = {
    "jobs": jobs,
    "logs": logs,
    "pipelines": pipelines,
    "submit": submit,
    "workers": workers,
}

#: Runs ``hodei ARGS…`` in-process against the test's server: ``(status, stdout, stderr)``.
RunCommand = Callable[..., Awaitable[tuple[int, str, str]]]


def settings() -> ServerSettings:
    return ServerSettings(
        host="127.0.0.1",
        port=0,
        store="memory://",
        bus="memory://",
        agent_token_sha256=hash_token(AGENT),
        tenants=(
            TenantSettings(name="acme", token_sha256=hash_token(ACME)),
            TenantSettings(
                name="tiny", token_sha256=hash_token(TINY), quota=TenantQuota(submit_rate=1)
            ),
        ),
        secret=b"s" * 32,
    )


async def _serve(*, task_status: trio.TaskStatus[str]) -> None:
    """The stock app over an embedded engine (one worker, 4 slots, real processes)."""
    config = Config()
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    fast = WorkerSettings(heartbeat_interval_s=1.0, poll_timeout_s=5.0, log_flush_interval_s=0.02)
    the_settings = settings()
    async with open_embedded(
        workers=1, slots=4, quotas=the_settings.quotas, worker_settings=fast
    ) as engine:
        app: Any = create_app(engine, the_settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(hypercorn_serve, app, config))
            task_status.started(f"http://127.0.0.1:{port}")


@pytest.fixture
async def server(nursery: trio.Nursery) -> str:
    """The base URL of a server running in this test."""
    url: str = await nursery.start(_serve)
    return url


@pytest.fixture
async def client(server: str) -> AsyncIterator[HodeiClient]:
    """A client of the tenant acme."""
    async with HodeiClient(server, ACME) as c:
        yield c


@pytest.fixture(autouse=True)
def _no_hodei_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # a developer's HODEI_SERVER or HODEI_TOKEN must not leak into the commands under test
    for name in ("HODEI_SERVER", "HODEI_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def hodei(server: str, capsys: pytest.CaptureFixture[str]) -> RunCommand:
    """Run a command as ``hodei`` would, with ``--server`` and acme's ``--token`` first
    (``server_url=None`` or ``token=None`` leaves them out)."""

    async def run(
        *argv: str, server_url: str | None = server, token: str | None = ACME, stdin: str = ""
    ) -> tuple[int, str, str]:
        name, *rest = argv
        parser = argparse.ArgumentParser(prog=f"hodei {name}")
        handler = COMMANDS[name].command(parser)
        flags = [*(["--server", server_url] if server_url else [])]
        flags += ["--token", token] if token else []
        args = parser.parse_args([*flags, *rest])
        capsys.readouterr()  # what came before is not this command's
        # the handler runs its own trio loop, as `hodei` does: in a thread, while this
        # test's loop serves it
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
            status = await trio.to_thread.run_sync(handler, args)
        out, err = capsys.readouterr()
        return status, out, err

    return run


async def until_end(client: HodeiClient, job_id: str) -> dict[str, Any]:
    """Wait for a job to end, through its log stream; returns it as it ended."""
    ended: dict[str, Any] | None = None
    with trio.fail_after(10):
        async for event in client.stream_logs(job_id):  # to its end: it then closes itself
            if event.event == "end":
                ended = event.json()
    assert ended is not None, "the stream ended without an end event"
    return ended


def columns(table: str) -> list[dict[str, str]]:
    """The rows of a printed table as dicts by header, checking that the columns line up
    (every cell starts where its header does)."""
    header, *lines = table.splitlines()
    names = header.split("  ")
    names = [n.strip() for n in names if n.strip()]
    starts = [header.index(name) for name in names]
    rows = []
    for line in lines:
        cells = {}
        for i, name in enumerate(names):
            end = starts[i + 1] if i + 1 < len(names) else len(line)
            cell = line[starts[i] : end]
            assert not cell.startswith(" ") or not cell.strip() or i == 0, (line, name)
            assert starts[i] == 0 or line[starts[i] - 1] == " ", (line, name)
            cells[name] = cell.strip()
        rows.append(cells)
    return rows
