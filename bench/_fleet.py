"""The simulated agents (the client processes) of ``bench.http_longpoll``.

``python -m bench._fleet URL FIRST COUNT FILE`` runs agents ``FIRST`` to ``FIRST + COUNT - 1``
against the server at ``URL`` until killed, each speaking the agent protocol as ``hodei agent``
does over raw HTTP/1.1 (h11 over trio sockets), and writes what they did to ``FILE`` every
100 ms.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import h11
import trio

from ._http1 import Connection
from .http_dispatch import AGENT_TOKEN

REGISTERING = 32  # registrations in progress at once, per client process


@attrs.define
class _Stats:
    """What a client process reports to the benchmark, in its stats file."""

    registered: int = 0
    polls_in_flight: int = 0
    polls: int = 0
    heartbeats: int = 0
    jobs: int = 0
    errors: int = 0
    first_error: str = ""

    def error(self, what: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = what[:500]


async def _call(
    connection: Connection,
    stats: _Stats,
    what: str,
    method: str,
    target: str,
    token: str,
    body: object,
    ok: tuple[int, ...] = (200,),
) -> tuple[int, Any]:
    """One agent call; a failure or an unexpected status is counted, then waited out for a
    second, as an agent backs off."""
    try:
        status, answer = await connection.request(method, target, token, body)
    except (OSError, trio.BrokenResourceError, h11.ProtocolError) as exc:
        status, answer = 0, repr(exc).encode()
    if status not in ok:
        stats.error(f"{what}: {status} {answer[:300]!r}")
        await trio.sleep(1)
        return status, None
    return status, json.loads(answer) if answer else None


async def _heartbeats(
    connection: Connection, stats: _Stats, worker_id: str, token: str, interval_s: float
) -> None:
    await trio.sleep(random.uniform(0, interval_s))  # spread the fleet over the interval
    target = f"/api/v1/workers/{worker_id}/heartbeat"
    while True:
        _, answer = await _call(
            connection, stats, "heartbeat", "POST", target, token, {"running": []}
        )
        stats.heartbeats += 1
        if answer is not None:  # the pace the server asks for, as a real agent keeps it
            interval_s = answer["heartbeat_interval_s"]
        await trio.sleep(interval_s)


async def _polls(
    connection: Connection, stats: _Stats, worker_id: str, token: str, wait_s: float
) -> None:
    # the first poll's wait is random, so that the fleet's polls do not all end together
    wait = random.uniform(1, wait_s)
    while True:
        stats.polls_in_flight += 1
        try:
            status, doc = await _call(
                connection,
                stats,
                "poll",
                "POST",
                f"/api/v1/workers/{worker_id}/poll?wait={wait:.3f}",
                token,
                {"running": []},
                ok=(200, 204),
            )
        finally:
            stats.polls_in_flight -= 1
        stats.polls += 1
        wait = wait_s
        for job in doc["jobs"] if status == 200 else ():
            # run it as `true` would: started, then exit code 0
            attempt = {"attempt": job["attempt"]}
            start = f"/api/v1/jobs/{job['id']}/start"
            await _call(connection, stats, "start", "POST", start, token, attempt)
            finish = f"/api/v1/jobs/{job['id']}/finish"
            await _call(
                connection, stats, "finish", "POST", finish, token, attempt | {"exit_code": 0}
            )
            stats.jobs += 1


async def _agent(
    host: str, port: int, n: int, stats: _Stats, registering: trio.CapacityLimiter
) -> None:
    poll_connection = Connection(host, port)
    registration = {"name": f"sim-{n:04d}", "labels": ["sim"], "capacity": {"slots": 1}}
    doc = None
    while doc is None:
        async with registering:
            _, doc = await _call(
                poll_connection,
                stats,
                "register",
                "POST",
                "/api/v1/workers",
                AGENT_TOKEN,
                registration,
                ok=(200, 201),
            )
    stats.registered += 1
    worker_id, token = doc["worker"]["id"], doc["token"]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            _heartbeats,
            Connection(host, port),
            stats,
            worker_id,
            token,
            doc["heartbeat_interval_s"],
        )
        nursery.start_soon(_polls, poll_connection, stats, worker_id, token, doc["poll_wait_s"])


async def _write_stats(stats: _Stats, path: Path) -> None:
    """Write the stats to ``path`` every 100 ms, atomically (the benchmark reads it anytime)."""
    scratch = path.with_suffix(".tmp")
    while True:
        scratch.write_text(json.dumps(attrs.asdict(stats)))
        scratch.replace(path)
        await trio.sleep(0.1)


async def _client(url: str, first: int, count: int, stats_path: Path) -> None:
    """Run agents ``first`` to ``first + count - 1`` until killed."""
    address = urlsplit(url)
    assert address.hostname is not None and address.port is not None
    stats = _Stats()
    registering = trio.CapacityLimiter(REGISTERING)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_write_stats, stats, stats_path)
        for n in range(first, first + count):
            nursery.start_soon(_agent, address.hostname, address.port, n, stats, registering)


if __name__ == "__main__":  # a client process: python -m bench._fleet URL FIRST COUNT FILE
    url_arg, first_arg, count_arg, stats_arg = sys.argv[1:]
    trio.run(_client, url_arg, int(first_arg), int(count_arg), Path(stats_arg))
