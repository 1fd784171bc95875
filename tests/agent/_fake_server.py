"""A fake of the server's agent protocol for ``httpx.MockTransport``: enough of it to drive the
agent's control plane through outages, refusals and lost answers without a socket."""

from __future__ import annotations

import json
from typing import Any

import attrs
import httpx
import trio

AGENT_TOKEN = "agent-token-0123456789"


def _json(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    if body is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def _error_json(code: str, message: str = "") -> dict[str, Any]:
    return {"error": {"code": code, "message": message or code, "details": []}}


def _error(status: int, code: str, message: str = "") -> httpx.Response:
    return _json(status, _error_json(code, message))


def worker_json(worker_id: str, name: str) -> dict[str, Any]:
    return {
        "id": worker_id,
        "name": name,
        "labels": [],
        "capacity": {"slots": 1, "cpu": None, "memory_mb": None},
        "state": "online",
        "last_heartbeat": 1.0,
        "registered_at": 1.0,
        "version": "",
        "hostname": "",
        "a_field_from_the_future": True,  # the agent must ignore it
    }


@attrs.define
class FakeServer:
    """The server's side of the agent protocol, in memory.

    Attributes:
        up: when False, every request fails as a refused connection.
        statuses: statuses to answer the next requests with, instead of handling them.
        lose_answer: paths whose next request is handled but its answer lost.
        too_large: the most chunks a log report may carry (413 beyond).
        stale: attempts the server refuses reports about (409).
        missing: jobs the server does not know (404).
        batches: whether it has the batch endpoint ``/workers/{id}/reports``.
    """

    up: bool = True
    statuses: list[tuple[int, dict[str, str]]] = attrs.Factory(list)
    lose_answer: set[str] = attrs.Factory(set)
    too_large: int | None = None
    stale: set[tuple[str, int]] = attrs.Factory(set)
    missing: set[str] = attrs.Factory(set)  # jobs the server does not know (404)
    key: int = 0  # worker tokens are "<id>.<key>": changing it forgets them all
    workers: dict[str, str] = attrs.Factory(dict)  # name -> id
    registrations: list[dict[str, Any]] = attrs.Factory(list)
    #: the reports as they arrived: ("start", job, attempt), ("logs", job, attempt, [seq…]),
    #: ("finish", job, attempt, body), ("leave",)
    arrivals: list[tuple[Any, ...]] = attrs.Factory(list)
    batches: bool = True  # False: a server without the batch endpoint (404)
    batch_sizes: list[int] = attrs.Factory(list)  # how many reports each batch carried
    logs: dict[tuple[str, int], dict[int, str]] = attrs.Factory(dict)
    requests: list[httpx.Request] = attrs.Factory(list)
    poll_answers: list[dict[str, Any]] = attrs.Factory(list)
    heartbeat_interval_s: Any = 5.0  # the pace its heartbeat answers ask for
    heartbeats: list[float] = attrs.Factory(list)  # when each heartbeat arrived (trio time)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def forget_tokens(self) -> None:
        """As a server restarted with a new key: every worker token is unknown (401)."""
        self.key += 1

    def forget_workers(self) -> None:
        """As a server restarted on an empty store: every worker is unknown (404)."""
        self.workers.clear()

    def stored(self, job_id: str, attempt: int = 1) -> list[tuple[int, str]]:
        return sorted(self.logs.get((job_id, attempt), {}).items())

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.up:
            raise httpx.ConnectError("connection refused", request=request)
        if self.statuses:
            status, headers = self.statuses.pop(0)
            return _json(
                status, {"error": {"code": "x", "message": "later", "details": []}}, headers
            )
        if request.url.path.endswith("/poll") and not self.poll_answers:
            await trio.sleep(float(request.url.params["wait"]))  # a long-poll with no news
        response = self._handle(request)
        if request.url.path in self.lose_answer:
            self.lose_answer.discard(request.url.path)
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return response

    def _handle(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.strip("/").split("/")[2:]  # after api/v1
        body: dict[str, Any] = json.loads(request.content) if request.content else {}
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if parts == ["workers"]:
            return self._register(token, body)
        if parts[0] == "workers" and parts[2] == "drain":
            return _json(202, worker_json(parts[1], "x"))
        worker_id, dot, key = token.rpartition(".")
        if not dot or key != str(self.key):
            return _error(401, "unauthorized")
        if parts[0] == "workers":
            if parts[1] != worker_id:
                return _error(403, "forbidden")
            if worker_id not in self.workers.values():
                return _error(404, "not_found")
            return self._worker_call(parts[2], request)
        job_id, what = parts[1], parts[2]
        if what != "start":
            body = {**body, "chunks": body.get("chunks", body.get("log_chunks"))}
        if self._too_large(what, body):
            return _error(413, "body_too_large")
        status, answer = self._job_report(job_id, what, body)
        return _json(status, answer)

    def _too_large(self, what: str, body: dict[str, Any]) -> bool:
        return (
            what == "logs" and self.too_large is not None and len(body["chunks"]) > self.too_large
        )

    def _job_report(self, job_id: str, what: str, body: dict[str, Any]) -> tuple[int, Any]:
        """A report's status and answer; ``body`` has its output under ``chunks``."""
        if job_id in self.missing:
            return 404, _error_json("not_found", f"job {job_id!r} not found")
        attempt = body["attempt"]
        if (job_id, attempt) in self.stale:
            message = f"job {job_id!r}: attempt {attempt} is stale, the current attempt is 9"
            return 409, _error_json("stale_attempt", message)
        if what == "start":
            self.arrivals.append(("start", job_id, attempt))
            return 200, {}
        chunks = body["chunks"]
        stored = self.logs.setdefault((job_id, attempt), {})
        for chunk in chunks:
            stored.setdefault(chunk["seq"], chunk["data"])  # a resent seq is ignored
        if what == "logs":
            self.arrivals.append(("logs", job_id, attempt, [c["seq"] for c in chunks]))
            return 200, {"job_id": job_id, "attempt": attempt, "received": len(chunks)}
        self.arrivals.append(("finish", job_id, attempt, body))
        return 200, {}

    def _reports(self, request: httpx.Request) -> httpx.Response:
        if not self.batches:
            return _error(404, "not_found", f"no such endpoint: {request.url.path}")
        reports = json.loads(request.content)["reports"]
        self.batch_sizes.append(len(reports))
        if any(self._too_large(r["type"], r) for r in reports):
            return _error(413, "body_too_large")
        results = []
        for report in reports:
            status, answer = self._job_report(report["job_id"], report["type"], report)
            results.append({"status": status, **(answer if status >= 300 else {})})
        return _json(200, {"results": results})

    def _register(self, token: str, body: dict[str, Any]) -> httpx.Response:
        if token != AGENT_TOKEN:
            return _error(401, "unauthorized", "unknown token")
        self.registrations.append(body)
        name = body["name"]
        created = name not in self.workers
        worker_id = self.workers.setdefault(name, f"wrk-{len(self.registrations)}")
        answer = {
            "worker": worker_json(worker_id, name),
            "token": f"{worker_id}.{self.key}",
            "heartbeat_interval_s": 5.0,
            "poll_wait_s": 25.0,
            "lost_after_s": 30.0,
        }
        return _json(201 if created else 200, answer)

    def _worker_call(self, what: str, request: httpx.Request) -> httpx.Response:
        if what == "heartbeat":
            self.heartbeats.append(trio.current_time())
            pace = self.heartbeat_interval_s
            return _json(200, {"cancel": [], "drain": False, "heartbeat_interval_s": pace})
        if what == "reports":
            return self._reports(request)
        if what == "poll":
            if self.poll_answers:
                return _json(200, self.poll_answers.pop(0))
            return _json(204)
        assert what == "leave"
        self.arrivals.append(("leave",))
        return _json(200, {})


def job_json(job_id: str, attempt: int = 1, **spec: Any) -> dict[str, Any]:
    """A job as a poll's answer carries it."""
    return {
        "id": job_id,
        "tenant": "default",
        "spec": {
            "command": None, "script": "true", "env": {}, "secrets": {}, "labels": [],
            "resources": {"cpu": 0.0, "memory_mb": 0}, "timeout_s": None, "retries": 0,
            "priority": 0, "name": "", **spec,
        },
        "state": "assigned", "attempt": attempt, "worker_id": "wrk-1", "exit_code": None,
        "failure": None, "created_at": 1.0, "assigned_at": 1.0, "started_at": None,
        "finished_at": None, "run_id": None, "step": None, "name": job_id,
    }  # fmt: skip
