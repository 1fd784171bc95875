"""One ``hodei server`` on SQLite, 4 real agents x 4 slots on loopback, driven over HTTP.

Real processes, as an operator runs them: ``python -m hodei_backends._cli server`` with a
TOML config giving fixed tokens, and four ``python -m hodei_agent --slots 4``. Three
measurements, each repeat against a fresh server and fleet:

- dispatch latency: 200 jobs submitted one at a time, each ``date +%s.%N``: the wall clock
  the job's process printed (it is read back from the job's log) minus the client's just
  before the POST, so from the submission to a process that has started and run; targets
  p50 < 20 ms, p99 < 100 ms. The job's ``started_at``, which the server sets when the
  agent's report that the process started arrives, is reported too: it adds that report's
  trip to the server (every process here is on one machine, so the clocks agree);
- throughput: 1,000 jobs running ``true`` submitted by 8 concurrent clients (plain HTTP/1.1
  connections, the cheapest load generator at hand), timed until all have ended (polling the
  list of live jobs every 50 ms); target >= 200 jobs/s; the rate of the submissions alone is
  reported too (for information);
- log lag: a job prints its wall clock every 50 ms for ~5 s while a client follows
  ``/logs/stream`` (SSE); receive time minus printed time per line; target p99 < 250 ms.

The 1,000-agent long-poll figure of the issue is not measured here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import trio

from ._common import Result, percentile, repeat
from ._http1 import Connection

TENANT_TOKEN = "bench-tenant-token-0123456789"
AGENT_TOKEN = "bench-agent-token-0123456789"
AGENTS = 4
SLOTS = 4
LATENCY_JOBS = 200
BURST = 1_000
SUBMITTERS = 8
LOG_LINES = 100
_ENDS = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
_LIVE = "queued,assigned,running,cancelling"
_REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _spawn(tmp: Path, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    """A Python process in ``tmp``, its output in ``tmp/NAME.log``; this repository on its
    path so that processes can import ``bench``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO), env.get("PYTHONPATH")]))
    with (tmp / f"{name}.log").open("ab") as output:
        return subprocess.Popen(
            [sys.executable, *argv],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp,
        )


def _write_config(tmp: Path) -> Path:
    """A server configuration in ``tmp``: a SQLite file there, and the fixed tokens."""
    config = tmp / "hodei.toml"
    config.write_text(
        f'[server]\nstore = "sqlite:///{tmp}/hodei.db"\nagent_token = "{AGENT_TOKEN}"\n\n'
        f'[tenants.bench]\ntoken = "{TENANT_TOKEN}"\n'
    )
    return config


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM (agents first, the server last), then SIGKILL what is still running."""
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in reversed(processes):
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _until(client: httpx.AsyncClient, what: str, check: Any, timeout_s: float = 30) -> None:
    with trio.move_on_after(timeout_s):
        while True:
            with contextlib.suppress(httpx.TransportError):
                if await check(client):
                    return
            await trio.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


@contextlib.asynccontextmanager
async def _cluster() -> AsyncIterator[httpx.AsyncClient]:
    """A server on SQLite in a temp dir and its agents; yields a client of the tenant."""
    with tempfile.TemporaryDirectory(prefix="hodei-bench-") as tmp_name:
        tmp = Path(tmp_name)
        config = _write_config(tmp)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        processes: list[subprocess.Popen[bytes]] = []
        client = httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {TENANT_TOKEN}"},
            timeout=30,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        try:
            server = ["-m", "hodei_backends._cli", "server", "--config", str(config)]
            processes.append(_spawn(tmp, "server", [*server, "--port", str(port)]))

            async def ready(c: httpx.AsyncClient) -> bool:
                if processes[0].poll() is not None:
                    raise RuntimeError((tmp / "server.log").read_text())
                return (await c.get("/readyz")).status_code == 200

            await _until(client, "the server", ready)
            for n in range(AGENTS):
                agent = ["-m", "hodei_agent", "--server", url, "--token", AGENT_TOKEN]
                processes.append(
                    _spawn(tmp, f"a{n}", [*agent, "--name", f"a{n}", "--slots", str(SLOTS)])
                )

            async def online(c: httpx.AsyncClient) -> bool:
                workers = (await c.get("/api/v1/workers")).json()["items"]
                return sum(w["state"] == "online" for w in workers) == AGENTS

            await _until(client, "the agents", online)
            yield client
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()
            _stop(processes)


async def _submit(client: httpx.AsyncClient, command: list[str]) -> str:
    response = await client.post("/api/v1/jobs", json={"command": command})
    if response.status_code != 202:
        raise RuntimeError(f"submit: {response.status_code} {response.text}")
    job_id: str = response.json()["id"]
    return job_id


async def _finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = (await client.get(f"/api/v1/jobs/{job_id}")).json()
        if job["state"] in _ENDS:
            return job
        await trio.sleep(0.01)


async def _latency(client: httpx.AsyncClient) -> tuple[list[float], list[float]]:
    """(submit -> the process runs, submit -> the server has its start report), in ms."""
    at_process, at_server = [], []
    for _ in range(LATENCY_JOBS):
        before = time.time()
        job = await _finished(client, await _submit(client, ["date", "+%s.%N"]))
        if job["state"] != "succeeded" or job["started_at"] is None:
            raise RuntimeError(f"job did not run: {job}")
        printed = (await client.get(f"/api/v1/jobs/{job['id']}/logs")).text
        at_process.append((float(printed) - before) * 1000)
        at_server.append((job["started_at"] - before) * 1000)
    return at_process, at_server


async def _throughput(client: httpx.AsyncClient) -> tuple[float, float]:
    # The submitters speak plain HTTP/1.1 (``_http1``): on two cores, every millisecond the
    # load generator spends is taken from the server and the agents it measures.
    host, port = client.base_url.host, client.base_url.port
    assert port is not None
    body = {"command": ["true"]}
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for n in range(SUBMITTERS):
            count = BURST // SUBMITTERS + (n < BURST % SUBMITTERS)

            async def submit(count: int = count) -> None:
                connection = Connection(host, port)
                try:
                    for _ in range(count):
                        status, answer = await connection.request(
                            "POST", "/api/v1/jobs", TENANT_TOKEN, body
                        )
                        if status != 202:
                            raise RuntimeError(f"submit: {status} {answer!r}")
                finally:
                    connection.close()

            nursery.start_soon(submit)
    submitted = time.perf_counter()
    while True:
        live = await client.get("/api/v1/jobs", params={"state": _LIVE, "limit": 1})
        if not live.json()["items"]:
            break
        await trio.sleep(0.05)
    return BURST / (time.perf_counter() - t0), BURST / (submitted - t0)


async def _log_lag(client: httpx.AsyncClient) -> list[float]:
    script = f"sleep 0.5; for i in $(seq {LOG_LINES}); do date +%s.%N; sleep 0.05; done"
    job_id = await _submit(client, ["sh", "-c", script])
    lags: list[float] = []
    async with client.stream("GET", f"/api/v1/jobs/{job_id}/logs/stream") as response:
        event = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "log":
                now = time.time()
                for printed in json.loads(line[5:])["data"].split():
                    lags.append((now - float(printed)) * 1000)
            elif line.startswith("data:") and event == "end":
                break
    if len(lags) != LOG_LINES:
        raise RuntimeError(f"saw {len(lags)} log lines of {LOG_LINES}")
    return lags


async def _measure() -> dict[str, float]:
    async with _cluster() as client:
        for _ in range(10):  # warm up connections and the agents
            await _finished(client, await _submit(client, ["true"]))
        latencies, recorded = await _latency(client)
        rate, submit_rate = await _throughput(client)
        lags = await _log_lag(client)
    return {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "recorded_p50": percentile(recorded, 50),
        "recorded_p99": percentile(recorded, 99),
        "rate": rate,
        "submit_rate": submit_rate,
        "log_p50": percentile(lags, 50),
        "log_p99": percentile(lags, 99),
    }


def run(repeats: int = 3) -> list[Result]:
    """The figures of this benchmark."""
    values = repeat(repeats, lambda: trio.run(_measure))
    fleet = f"{AGENTS} agents x {SLOTS} slots"
    return [
        Result("http: submit -> process running p50", values["p50"], "ms", 20, False),
        Result("http: submit -> process running p99", values["p99"], "ms", 100, False),
        Result("http: submit -> start recorded p50", values["recorded_p50"], "ms", None, False),
        Result("http: submit -> start recorded p99", values["recorded_p99"], "ms", None, False),
        Result(f"http: `true` end to end, {fleet}", values["rate"], "jobs/s", 200, True),
        Result("http: submissions alone (8 clients)", values["submit_rate"], "jobs/s", None, True),
        Result("http: log line -> SSE subscriber p50", values["log_p50"], "ms", None, False),
        Result("http: log line -> SSE subscriber p99", values["log_p99"], "ms", 250, False),
    ]
