"""The real server: hypercorn on a loopback socket, driven over HTTP. The long-poll wakes at
once on a submit, the log streams live, the core's worker loop runs jobs through the agent
protocol, and ``hodei server`` starts, prints its tokens and stops on SIGTERM."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from hodei_backends._documents import parse_job_spec
from hodei_core import (
    FailureReason,
    Job,
    JobAlreadyFinished,
    JobNotFound,
    JobState,
    LogChunk,
    Outcome,
    StaleAttempt,
    Stream,
    Worker,
    WorkerRegistration,
    WorkerState,
)
from hodei_core.ports import Instructions, LogSink
from hodei_core.worker import WorkerLoop, WorkerSettings
from hodei_http import serve
from hodei_http._cli import run_server

from .conftest import ACME, AGENT, auth, make_settings


@pytest.fixture
async def server(nursery: trio.Nursery) -> str:
    """A server on a free loopback port; its base URL."""
    out = io.StringIO()
    url: str = await nursery.start(
        lambda task_status: serve(
            make_settings(host="127.0.0.1", port=0), out=out, handle_signals=False,
            task_status=task_status,
        )
    )  # fmt: skip
    assert out.getvalue().startswith(f"hodei server listening on {url} (store memory://")
    return url


@pytest.fixture
async def users(server: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server, headers=auth(ACME), timeout=10) as client:
        yield client


async def _register(server: str, name: str = "w1") -> tuple[str, dict[str, str]]:
    async with httpx.AsyncClient(base_url=server) as client:
        response = await client.post(
            "/api/v1/workers", json={"name": name, "capacity": {"slots": 2}}, headers=auth(AGENT)
        )
    data = response.json()
    return data["worker"]["id"], auth(data["token"])


async def test_long_poll_wakes_within_milliseconds_of_a_submit(
    server: str, users: httpx.AsyncClient
) -> None:
    worker_id, headers = await _register(server)
    async with httpx.AsyncClient(base_url=server, headers=headers, timeout=30) as agent:
        # warm the connection, so that the measure below is the server's, not the handshake's
        assert (await agent.post(f"/api/v1/workers/{worker_id}/poll?wait=0")).status_code == 204
        answered = trio.Event()
        answers: list[tuple[float, httpx.Response]] = []

        async def poll() -> None:
            response = await agent.post(f"/api/v1/workers/{worker_id}/poll", params={"wait": 25})
            answers.append((trio.current_time(), response))
            answered.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # the poll is waiting
            response = await users.post("/api/v1/jobs", json={"script": "true"})
            submitted = trio.current_time()
            with trio.fail_after(2):
                await answered.wait()
    answered_at, instructions = answers[0]
    assert instructions.status_code == 200
    assert [j["id"] for j in instructions.json()["jobs"]] == [response.json()["id"]]
    assert answered_at - submitted < 0.1, f"the poll took {answered_at - submitted:.3f}s"


async def test_log_stream_is_live(server: str, users: httpx.AsyncClient) -> None:
    worker_id, headers = await _register(server)
    job_id = (await users.post("/api/v1/jobs", json={"script": "true"})).json()["id"]
    async with httpx.AsyncClient(base_url=server, headers=headers, timeout=30) as agent:
        await agent.post(f"/api/v1/workers/{worker_id}/poll?wait=5")
        await agent.post(f"/api/v1/jobs/{job_id}/start", json={"attempt": 1})
        async with users.stream("GET", f"/api/v1/jobs/{job_id}/logs/stream") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()

            async def next_event() -> dict[str, Any]:
                fields: dict[str, str] = {}
                with trio.fail_after(2):
                    async for line in lines:
                        if not line:
                            if fields:
                                return {**fields, "data": json.loads(fields["data"])}
                            continue
                        key, _, value = line.partition(": ")
                        fields[key] = value
                raise AssertionError("the stream ended early")

            for seq in range(3):
                chunk = {"seq": seq, "stream": "stdout", "data": f"line {seq}\n"}
                sent = await agent.post(
                    f"/api/v1/jobs/{job_id}/logs", json={"attempt": 1, "chunks": [chunk]}
                )
                assert sent.status_code == 200
                event = await next_event()  # arrives before the next line is even written
                assert (event["event"], event["id"], event["data"]["data"]) == (
                    "log", f"1:{seq}", f"line {seq}\n",
                )  # fmt: skip
            await agent.post(f"/api/v1/jobs/{job_id}/finish", json={"attempt": 1, "exit_code": 0})
            end = await next_event()
            assert (end["event"], end["data"]["state"]) == ("end", "succeeded")
            # the server ends the stream after `end`; reading it to its end lets httpcore
            # close its generators (one left half-read would be finalized with a warning)
            async for line in lines:
                raise AssertionError(f"more after the end: {line!r}")
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # the metrics task counts it
    metrics = (await users.get("/metrics")).text
    assert 'hodei_jobs_finished_total{state="succeeded"} 1\n' in metrics
    assert "hodei_jobs_submitted_total 1\n" in metrics


def _job(data: dict[str, Any]) -> Job:
    """A job from its wire form, as an agent reads its instructions."""
    return Job(
        id=data["id"],
        tenant=data["tenant"],
        spec=parse_job_spec({k: v for k, v in data["spec"].items() if k != "name"}),
        state=JobState(data["state"]),
        attempt=data["attempt"],
        worker_id=data["worker_id"],
        created_at=data["created_at"],
    )


class _HttpControlPlane:
    """The smallest ``ControlPlane`` over this server's agent protocol: what the agent will
    be, minus retries. It checks that the wire format carries all that the worker loop needs."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def _post(self, path: str, body: dict[str, Any], **params: Any) -> httpx.Response:
        response = await self._client.post(path, json=body, params=params or None)
        if response.status_code == 409:
            error = response.json()["error"]
            if error["code"] == "already_finished":
                raise JobAlreadyFinished(path, "finished")
            raise StaleAttempt(path, body.get("attempt", 0), 0)
        if response.status_code == 404:
            raise JobNotFound(path)
        assert response.status_code in (200, 201, 204), response.text
        return response

    async def register(self, registration: WorkerRegistration) -> Worker:
        body = {"name": registration.name, "capacity": {"slots": registration.capacity.slots}}
        async with httpx.AsyncClient(base_url=self._client.base_url) as client:
            data = (await client.post("/api/v1/workers", json=body, headers=auth(AGENT))).json()
        self._client.headers.update(auth(data["token"]))
        return Worker(id=data["worker"]["id"], name=registration.name)

    @staticmethod
    def _instructions(data: dict[str, Any]) -> Instructions:
        cancel = frozenset((c["job_id"], c["attempt"]) for c in data["cancel"])
        jobs = tuple(_job(j) for j in data.get("jobs", ()))
        return Instructions(jobs=jobs, cancel=cancel, drain=data["drain"])

    @staticmethod
    def _running(running: Sequence[tuple[str, int]]) -> dict[str, Any]:
        return {"running": [{"job_id": j, "attempt": a} for j, a in running]}

    async def heartbeat(self, worker_id: str, running: Sequence[tuple[str, int]]) -> Instructions:
        response = await self._post(
            f"/api/v1/workers/{worker_id}/heartbeat", self._running(running)
        )
        return self._instructions(response.json())

    async def poll(
        self, worker_id: str, running: Sequence[tuple[str, int]], timeout_s: float
    ) -> Instructions:
        response = await self._post(
            f"/api/v1/workers/{worker_id}/poll", self._running(running), wait=timeout_s
        )
        return (
            Instructions() if response.status_code == 204 else self._instructions(response.json())
        )

    async def start(self, worker_id: str, job_id: str, attempt: int) -> None:
        await self._post(f"/api/v1/jobs/{job_id}/start", {"attempt": attempt})

    @staticmethod
    def _chunks(chunks: Sequence[LogChunk]) -> list[dict[str, Any]]:
        return [
            {"seq": c.seq, "stream": c.stream.value, "data": c.data, "ts": c.ts} for c in chunks
        ]

    async def append_logs(
        self, worker_id: str, job_id: str, attempt: int, chunks: Sequence[LogChunk]
    ) -> None:
        body = {"attempt": attempt, "chunks": self._chunks(chunks)}
        await self._post(f"/api/v1/jobs/{job_id}/logs", body)

    async def finish(
        self, worker_id: str, job_id: str, attempt: int, outcome: Outcome,
        chunks: Sequence[LogChunk] = (),
    ) -> None:  # fmt: skip
        body = {
            "attempt": attempt, "exit_code": outcome.exit_code, "timed_out": outcome.timed_out,
            "cancelled": outcome.cancelled, "error": outcome.error,
            "log_chunks": self._chunks(chunks),
        }  # fmt: skip
        await self._post(f"/api/v1/jobs/{job_id}/finish", body)

    async def leave(self, worker_id: str) -> None:
        await self._post(f"/api/v1/workers/{worker_id}/leave", {})


async def _until_end(users: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """Wait for the job to end, through its event stream; returns it as it ended."""
    job: dict[str, Any] | None = None
    async with users.stream("GET", f"/api/v1/jobs/{job_id}/logs/stream") as stream:
        event = ""
        async for line in stream.aiter_lines():  # to its end: see test_log_stream_is_live
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "end":
                job = json.loads(line.removeprefix("data: "))
    assert job is not None, "the stream ended without an end event"
    return job


class _ScriptExecutor:
    """Runs a job's script word as Python: ``ok`` exits 0, ``hang`` waits to be cancelled,
    anything else exits 3; each writes a line to stdout and its secret to stderr."""

    def __init__(self) -> None:
        self.started = {name: trio.Event() for name in ("ok", "bad", "hang")}
        self.cancelled = trio.Event()

    async def run(self, job: Job, logs: LogSink) -> int:
        word = job.spec.argv[-1]
        self.started[word].set()
        await logs.write(Stream.STDOUT, f"running {word}\n")
        await logs.write(Stream.STDERR, f"secret is {job.spec.secrets.get('S', '-')}\n")
        if word == "hang":
            try:
                await trio.sleep_forever()
            finally:
                self.cancelled.set()
        return 0 if word == "ok" else 3


async def test_the_core_worker_loop_runs_jobs_over_http(
    server: str, users: httpx.AsyncClient
) -> None:
    executor = _ScriptExecutor()
    settings = WorkerSettings(heartbeat_interval_s=0.5, poll_timeout_s=5, log_flush_interval_s=0.01)
    async with httpx.AsyncClient(base_url=server, timeout=30) as client:
        loop = WorkerLoop(
            _HttpControlPlane(client), executor, WorkerRegistration(name="loop"), settings=settings
        )
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                worker: Worker = await nursery.start(loop.run)
                ok = await users.post(
                    "/api/v1/jobs", json={"script": "ok", "secrets": {"S": "xyz"}}
                )
                bad = await users.post("/api/v1/jobs", json={"script": "bad"})
                hang = await users.post("/api/v1/jobs", json={"script": "hang"})
                ok_job = await _until_end(users, ok.json()["id"])
                bad_job = await _until_end(users, bad.json()["id"])
                await executor.started["hang"].wait()
                await users.post(f"/api/v1/jobs/{hang.json()['id']}/cancel")
                await executor.cancelled.wait()
                hang_job = await _until_end(users, hang.json()["id"])
                # drained, the loop leaves and returns, which closes this nursery
                await users.post(f"/api/v1/workers/{worker.id}/drain")
    assert (ok_job["state"], bad_job["state"], hang_job["state"]) == (
        "succeeded", "failed", "cancelled",
    )  # fmt: skip
    assert (bad_job["exit_code"], bad_job["failure"]) == (3, FailureReason.SCRIPT_FAILURE.value)
    log = await users.get(
        f"/api/v1/jobs/{ok_job['id']}/logs", headers={"Accept": "application/json"}
    )
    chunks = log.json()["chunks"]
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    by_stream = {
        s: "".join(c["data"] for c in chunks if c["stream"] == s) for s in ("stdout", "stderr")
    }
    # the secret reached the job, and is masked in its log
    assert by_stream == {"stdout": "running ok\n", "stderr": "secret is ***\n"}
    worker_state = (await users.get(f"/api/v1/workers/{worker.id}")).json()["state"]
    assert worker_state == WorkerState.OFFLINE.value


_SERVER = (
    "import sys; from hodei_http._cli import run_server; "
    "sys.exit(run_server({'port': 0, 'store': 'memory://'}, {}))"
)


async def test_hodei_server_prints_its_tokens_and_stops_on_sigterm() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", _SERVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        assert process.stdout is not None
        output = b""
        with trio.fail_after(20):
            while output.count(b"\n") < 4:  # the URL, a heading and two tokens
                data = await process.stdout.receive_some()
                assert data, f"the server stopped: {output!r}"
                output += data
        first, heading, agent, tenant = output.decode().splitlines()[:4]
        url = first.split()[4]
        assert first == f"hodei server listening on {url} (store memory://, bus memory://)"
        assert heading.startswith("generated tokens")
        agent_token = agent.split(": ")[1]
        tenant_token = tenant.split(": ")[1]
        assert "agent registration token" in agent and "tenant 'default'" in tenant
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/healthz")).status_code == 200
            jobs = await client.get("/api/v1/jobs", headers=auth(tenant_token))
            assert jobs.status_code == 200
            register = await client.post(
                "/api/v1/workers", json={"name": "w"}, headers=auth(agent_token)
            )
            assert register.status_code == 201
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_hodei_server_on_a_taken_port_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert run_server({"port": port, "store": "memory://"}, {}) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"hodei server: cannot listen on http://127.0.0.1:{port}: ")
    assert err.count("\n") == 1
