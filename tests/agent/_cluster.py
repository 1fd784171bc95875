"""Real processes on loopback: ``hodei server`` and ``hodei agent`` started as
``python -m …``, and a user's HTTP client. Every process is killed when the test ends; their
output goes to files, printed at teardown (pytest shows it when a test fails)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import trio

T = TypeVar("T")

ACME = "acme-token-0123456789"
GLOBEX = "globex-token-0123456789"
AGENT = "agent-token-0123456789"
#: How long anything that a test waits for may take, at most.
PATIENCE_S = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def until(
    check: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = PATIENCE_S
) -> T:
    """Wait until ``check()`` returns something truthy (an effect of another process, which
    cannot be awaited): asks again every 50 ms, for at most ``timeout_s``."""
    with trio.move_on_after(timeout_s):
        while True:
            result = await check()
            if result:
                return result
            await trio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: it has exited, only not been reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class Cluster:
    """Starts servers and agents; ``users`` is a client of the tenant ``acme``."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.users = httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {ACME}"}, timeout=10
        )
        self.processes: list[tuple[str, trio.Process]] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}

    def config(self, store: str | None = None, **server: float) -> Path:
        """A server configuration with fixed tokens (worker tokens then survive restarts);
        without ``store``, the server's default: a SQLite file in its working directory."""
        lines = ["[server]", f'agent_token = "{AGENT}"']
        if store is not None:
            lines.append(f'store = "{store}"')
        lines += [f"{key} = {value}" for key, value in server.items()]
        lines += ["", "[tenants.acme]", f'token = "{ACME}"']
        lines += ["", "[tenants.globex]", f'token = "{GLOBEX}"']
        path = self.tmp / "hodei.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    async def _start(self, name: str, argv: list[str]) -> trio.Process:
        output = (self.tmp / f"{name}.log").open("ab")
        process = await trio.lowlevel.open_process(
            [sys.executable, *argv],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.tmp,
        )
        output.close()
        self.processes.append((name, process))
        return process

    async def server(self, config: Path | None = None) -> trio.Process:
        """``hodei server`` on this cluster's port; returns once it is ready."""
        argv = ["-m", "hodei_backends._cli", "server", "--port", str(self.port)]
        process = await self._start("server", [*argv, "--config", str(config or self.config())])

        async def ready() -> bool:
            if process.returncode is not None:
                raise AssertionError(f"the server exited ({process.returncode}):\n{self.logs()}")
            try:
                return (await self.users.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await until(ready, "the server to be ready")
        return process

    async def agent(self, name: str, *args: str) -> trio.Process:
        """``hodei agent`` named ``name`` (``args``: more flags); returns once it is online."""
        argv = ["-m", "hodei_agent", "--server", self.url, "--token", AGENT, "--name", name]
        process = await self._start(name, [*argv, *args])
        await self.worker(name, "online", process)
        return process

    async def worker(
        self, name: str, state: str, process: trio.Process | None = None
    ) -> dict[str, Any]:
        """Wait until the worker ``name`` is in ``state``; returns it."""

        async def found() -> dict[str, Any] | None:
            if process is not None and process.returncode is not None:
                raise AssertionError(f"agent {name} exited:\n{self.logs()}")
            for worker in (await self.users.get("/api/v1/workers")).json()["items"]:
                if worker["name"] == name and worker["state"] == state:
                    return dict(worker)
            return None

        return await until(found, f"worker {name} to be {state}")

    async def job(self, job_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Wait until the job satisfies ``done``; returns it."""

        async def check() -> dict[str, Any] | None:
            job: dict[str, Any] = (await self.users.get(f"/api/v1/jobs/{job_id}")).json()
            return job if done(job) else None

        return await until(check, f"job {job_id}")

    async def finished(self, job_id: str) -> dict[str, Any]:
        """Wait until the job has ended; returns it."""
        ends = {"succeeded", "failed", "timed_out", "cancelled"}
        return await self.job(job_id, lambda job: job["state"] in ends)

    async def submit(self, spec: dict[str, Any]) -> str:
        response = await self.users.post("/api/v1/jobs", json=spec)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    async def chunks(self, job_id: str, attempt: int | None = None) -> list[dict[str, Any]]:
        params = {} if attempt is None else {"attempt": attempt}
        response = await self.users.get(
            f"/api/v1/jobs/{job_id}/logs", params=params, headers={"Accept": "application/json"}
        )
        chunks: list[dict[str, Any]] = response.json()["chunks"]
        return chunks

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')}"
            for path in sorted(self.tmp.glob("*.log"))
        )

    async def aclose(self) -> None:
        await self.users.aclose()
        for _, process in self.processes:
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
            with trio.CancelScope(shield=True):
                await process.wait()
        print(self.logs())
