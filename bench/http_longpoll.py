"""One ``hodei server`` on SQLite with 1,000 simulated agents long-polling it: a user's
``GET /api/v1/jobs/{id}`` p99 < 50 ms meanwhile, and the server under 400 MB resident.

The server is a real process, as ``http_dispatch`` starts it (``python -m hodei_backends._cli
server`` with a TOML config and fixed tokens), with its default pace: agents long-poll for 25 s,
a worker silent for 30 s is lost, and a waiting poll counts as a sign of life, so that agents
whose poll waits are asked to heartbeat rarely (about 5 heartbeats a second for the whole
fleet: see ``hodei_http.Api.heartbeat_pace``).

The 1,000 agents are simulated by ``CLIENTS`` client processes (``bench._fleet`` run as a script),
each agent speaking the agent protocol as ``hodei agent`` does over two keep-alive
connections of its own, one for its long-polls and one for its heartbeats: it registers
(``POST /api/v1/workers``), then long-polls (``POST /api/v1/workers/{id}/poll``) again as
soon as a poll ends and heartbeats at the pace the registration answer, then each heartbeat
answer, asks for. So the server holds 2,000 connections and 1,000 waiting polls, and answers
~40 polls and ~100 heartbeats a second, as it would with real agents. The clients speak raw
HTTP/1.1 (h11 over trio sockets), much cheaper than httpx, so that their CPU does not eat
into the server's.
Each agent's first poll waits a random 1-25 s and its first heartbeat comes after a random
fraction of the interval, so that the fleet's calls are spread over time as those of agents
started at different times would be, rather than coming in one wave.

A job (``true``) is submitted before the agents register; one of them gets it through its
long-poll and reports its start and end. Once every agent is registered and online, the job
has succeeded and the server's ``hodei_long_polls_waiting`` gauge reads 1,000, a user's
client (httpx, one keep-alive connection) reads that job 500 times, one request every 20 ms
(~10 s: two heartbeat rounds of the fleet). Figures, each repeat against a fresh server:

- ``GET /api/v1/jobs/{id}`` p50 and p99 while the 1,000 poll; target p99 < 50 ms;
- the server's peak resident memory (``VmHWM`` of ``/proc/PID/status``), read after the
  reads; target < 400 MB;
- errors: agent calls that failed or answered unexpectedly, and error lines in the server's
  log; target 0;
- for information: the same reads and the server's RSS before any agent registered; the
  fewest polls the clients had outstanding at any sample (every 100 ms) during the reads, and
  the server's own count of waiting polls after them; the agent calls answered per second,
  the CPU the server used (in cores) and the CPU the machine's other processes used
  meanwhile: on a machine busy with other work the server gets less CPU than it needs, and
  its latency shows it.

On a small 2-vCPU machine the server process is ~0.8 cores busy under this load (~3 ms of CPU
per agent call, most of it in hypercorn, h11, Starlette and trio; heartbeats are 200 of the
~240 calls a second), so the p99 depends on the machine, and on the heartbeat pace, far more
than the p50 does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from ._common import Result, percentile, repeat
from .http_dispatch import (
    TENANT_TOKEN,
    _free_port,
    _spawn,
    _stop,
    _until,
    _write_config,
)

AGENTS = 1_000
CLIENTS = 2  # client processes; the agents are split evenly among them
READS = 500
READ_INTERVAL_S = 0.02
# What hypercorn, trio or the app write when something went wrong (access logs are off).
_ERROR_LINE = re.compile(r"Traceback|\bERROR\b|Too many open files|Errno")


def _raise_open_files_limit(needed: int) -> None:
    """Let this process and its children (the server and the clients, which inherit it) have
    ``needed`` open files: each agent holds two sockets at each end."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise RuntimeError(f"RLIMIT_NOFILE hard limit {hard} < {needed} needed; raise it")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _proc_status(pid: int) -> dict[str, int]:
    """The ``kB`` lines of ``/proc/PID/status`` (``VmRSS``, ``VmHWM``...), in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if value.strip().endswith(" kB"):
            out[key] = int(value.split()[0])
    return out


@attrs.frozen
class _CpuClock:
    """CPU seconds used so far by the machine (all processes), by the server, and by the
    client processes and this one; the difference of two tells who had the CPUs meanwhile."""

    wall: float
    machine: float
    server: float
    ours: float

    @classmethod
    def read(cls, server: int, clients: list[int]) -> _CpuClock:
        ticks = os.sysconf("SC_CLK_TCK")
        fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle and iowait
        mine = os.times()
        return cls(
            wall=time.monotonic(),
            machine=(sum(fields[:8]) - idle) / ticks,
            server=_cpu_seconds(server),
            ours=sum(map(_cpu_seconds, clients)) + mine.user + mine.system,
        )


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of the process ``pid`` (its threads included)."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


# -- the benchmark -------------------------------------------------------------------------


def _client_stats(tmp: Path) -> list[dict[str, Any]]:
    """The stats the client processes wrote last (those that have written any yet)."""
    found = []
    for k in range(CLIENTS):
        with contextlib.suppress(FileNotFoundError):
            found.append(json.loads((tmp / f"client{k}.json").read_text()))
    return found


async def _polls_waiting(client: httpx.AsyncClient) -> int:
    """The server's own count of waiting long-polls (``/metrics``)."""
    text = (await client.get("/metrics")).text
    found = re.search(r"^hodei_long_polls_waiting (\d+)$", text, re.MULTILINE)
    if found is None:
        raise RuntimeError("no hodei_long_polls_waiting in /metrics")
    return int(found.group(1))


async def _online(client: httpx.AsyncClient) -> int:
    """How many workers the server has online, page by page."""
    online, offset = 0, 0
    while True:
        params: dict[str, str | int] = {"state": "online", "offset": offset, "limit": 1000}
        page = (await client.get("/api/v1/workers", params=params)).json()
        online += len(page["items"])
        if page["next_offset"] is None:
            return online
        offset = page["next_offset"]


async def _reads(client: httpx.AsyncClient, job_id: str, interval_s: float) -> list[float]:
    """``READS`` sequential reads of the job, one every ``interval_s``; each one's latency."""
    latencies = []
    next_at = trio.current_time()
    for _ in range(READS):
        await trio.sleep_until(next_at)
        next_at += interval_s
        t0 = time.perf_counter()
        response = await client.get(f"/api/v1/jobs/{job_id}")
        latencies.append((time.perf_counter() - t0) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"GET job: {response.status_code} {response.text}")
    return latencies


async def _sample_in_flight(tmp: Path, samples: list[int]) -> None:
    """Append the clients' count of outstanding polls to ``samples`` every 100 ms."""
    while True:
        stats = _client_stats(tmp)
        if len(stats) == CLIENTS:
            samples.append(sum(s["polls_in_flight"] for s in stats))
        await trio.sleep(0.1)


async def _measure() -> dict[str, float]:
    # each agent: two sockets at the server, two at its client; plus the server's own files
    _raise_open_files_limit(2 * AGENTS + 1024)
    with tempfile.TemporaryDirectory(prefix="hodei-bench-") as tmp_name:
        tmp = Path(tmp_name)
        config = _write_config(tmp)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        processes: list[subprocess.Popen[bytes]] = []
        client = httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {TENANT_TOKEN}"}, timeout=30
        )
        try:
            server_argv = ["-m", "hodei_backends._cli", "server", "--config", str(config)]
            server = _spawn(tmp, "server", [*server_argv, "--port", str(port)])
            processes.append(server)

            async def ready(c: httpx.AsyncClient) -> bool:
                if server.poll() is not None:
                    raise RuntimeError((tmp / "server.log").read_text())
                return (await c.get("/readyz")).status_code == 200

            await _until(client, "the server", ready)
            response = await client.post("/api/v1/jobs", json={"command": ["true"]})
            if response.status_code != 202:
                raise RuntimeError(f"submit: {response.status_code} {response.text}")
            job_id: str = response.json()["id"]
            await _reads(client, job_id, 0)  # warm up the server and the connection
            idle = await _reads(client, job_id, 0)
            idle_rss_kb = _proc_status(server.pid)["VmRSS"]

            for k in range(CLIENTS):
                first, end = k * AGENTS // CLIENTS, (k + 1) * AGENTS // CLIENTS
                argv = ["-m", "bench._fleet", url, str(first), str(end - first)]
                processes.append(_spawn(tmp, f"client{k}", [*argv, str(tmp / f"client{k}.json")]))

            async def fleet_ready(c: httpx.AsyncClient) -> bool:
                stats = _client_stats(tmp)
                if sum(s["registered"] for s in stats) < AGENTS:
                    return False
                job = (await c.get(f"/api/v1/jobs/{job_id}")).json()
                if job["state"] != "succeeded":
                    return False
                return await _online(c) == AGENTS and await _polls_waiting(c) == AGENTS

            # measured only once the server has seen all 1,000 polls waiting at the same time
            await _until(client, "1,000 agents polling", fleet_ready, timeout_s=120)
            in_flight: list[int] = []
            clients = [p.pid for p in processes[1:]]
            calls_before = sum(s["polls"] + s["heartbeats"] for s in _client_stats(tmp))
            before = _CpuClock.read(server.pid, clients)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_sample_in_flight, tmp, in_flight)
                loaded = await _reads(client, job_id, READ_INTERVAL_S)
                nursery.cancel_scope.cancel()
            after = _CpuClock.read(server.pid, clients)
            calls = sum(s["polls"] + s["heartbeats"] for s in _client_stats(tmp)) - calls_before
            hwm_kb = _proc_status(server.pid)["VmHWM"]
            # a few agents may be between two polls just now: this one is for information
            waiting_after = await _polls_waiting(client)
            # a worker lost meanwhile means the server fell behind with the heartbeats
            lost = AGENTS - await _online(client)
            stats = _client_stats(tmp)
            server_errors = [
                line
                for line in (tmp / "server.log").read_text(errors="replace").splitlines()
                if _ERROR_LINE.search(line)
            ]
            for line in [*server_errors[:5], *(s["first_error"] for s in stats if s["errors"])]:
                print(f"  error: {line}", file=sys.stderr)
            if lost:
                print(f"  error: {lost} workers were lost during the reads", file=sys.stderr)
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()
            _stop(processes)
    return {
        "p50": percentile(loaded, 50),
        "p99": percentile(loaded, 99),
        "rss": hwm_kb / 1024,
        "errors": sum(s["errors"] for s in stats) + len(server_errors) + lost,
        "idle_p50": percentile(idle, 50),
        "idle_p99": percentile(idle, 99),
        "idle_rss": idle_rss_kb / 1024,
        "in_flight_min": min(in_flight),
        "waiting_after": waiting_after,
        "calls": calls / (after.wall - before.wall),
        "server_cpu": (after.server - before.server) / (after.wall - before.wall),
        "others_cpu": (
            (after.machine - before.machine)
            - (after.server - before.server)
            - (after.ours - before.ours)
        )
        / (after.wall - before.wall),
    }


def run(repeats: int = 3) -> list[Result]:
    """The figures of this benchmark."""
    values = repeat(repeats, lambda: trio.run(_measure))
    fleet = f"{AGENTS:,} agents polling"
    return [
        Result(f"http: GET job p50, {fleet}", values["p50"], "ms", None, False),
        Result(f"http: GET job p99, {fleet}", values["p99"], "ms", 50, False),
        Result(f"http: server peak RSS, {fleet}", values["rss"], "MB", 400, False),
        Result(f"http: errors, {fleet}", values["errors"], "", 0, False),
        Result("http: GET job p50, no agent", values["idle_p50"], "ms", None, False),
        Result("http: GET job p99, no agent", values["idle_p99"], "ms", None, False),
        Result("http: server RSS, no agent", values["idle_rss"], "MB", None, False),
        Result("http: polls in flight at clients (min)", values["in_flight_min"], "", None, True),
        Result("http: polls waiting at the server after", values["waiting_after"], "", None, True),
        Result("http: agent calls answered meanwhile", values["calls"], "/s", None, True),
        Result("http: server CPU meanwhile", values["server_cpu"], "cores", None, False),
        Result("http: other processes' CPU meanwhile", values["others_cpu"], "cores", None, False),
    ]
