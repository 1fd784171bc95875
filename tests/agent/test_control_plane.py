"""The agent's resilience, on trio's autojump clock against a fake server behind
``httpx.MockTransport``: backoff, the outbox through outages, refusals, lost answers,
re-registration. No socket, no real sleeping."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from hodei_agent import HttpControlPlane
from hodei_agent._answers import Refused
from hodei_agent._retry import Backoff
from hodei_agent._wire import registered_from
from hodei_core import Job, LogChunk, Outcome, Stream, WorkerRegistration
from hodei_core.errors import JobNotFound, StaleAttempt
from hodei_core.ports import Instructions, LogSink
from hodei_core.worker import WorkerLoop, WorkerSettings

from ._fake_server import AGENT_TOKEN, FakeServer, job_json, worker_json

Clock = trio.testing.MockClock


def chunks(first: int, count: int, size: int = 10) -> list[LogChunk]:
    """``count`` chunks from seq ``first``, each of ``size`` characters: ``"3........."``."""
    seqs = range(first, first + count)
    return [LogChunk(seq, Stream.STDOUT, f"{seq}".ljust(size, "."), 1.0) for seq in seqs]


@asynccontextmanager
async def connected(server: FakeServer, **options: Any) -> AsyncIterator[HttpControlPlane]:
    """A control plane of the worker ``w1``, registered with ``server``."""
    control = HttpControlPlane(
        "http://hodei.test", AGENT_TOKEN, transport=server.transport(), **options
    )
    async with control:
        await control.register(WorkerRegistration(name="w1"))
        yield control


def test_backoff_doubles_up_to_its_cap_with_full_jitter() -> None:
    top = Backoff(0.2, 10.0, random=lambda: 0.999999)
    delays = [round(top.next_delay(), 3) for _ in range(9)]
    assert delays == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0]
    half = Backoff(0.2, 10.0, random=lambda: 0.5)
    assert [half.next_delay() for _ in range(3)] == [0.1, 0.2, 0.4]
    half.reset()
    assert half.next_delay() == 0.1
    # a server's Retry-After is honoured, within the cap; a long outage does not overflow
    assert Backoff(0.2, 10.0, random=lambda: 0.0).next_delay(retry_after_s=3.0) == 3.0
    assert Backoff(0.2, 10.0, random=lambda: 0.0).next_delay(retry_after_s=60.0) == 10.0
    assert Backoff(0.2, 10.0, random=lambda: 0.5, failures=5000).next_delay() == 5.0


async def test_reports_go_at_once_while_the_server_answers() -> None:
    server = FakeServer()
    async with connected(server) as control:
        await control.append_logs("wrk-1", "job-1", 1, chunks(0, 2))
        # the caller waited for the answer: the server has the chunks when it returns
        assert server.stored("job-1") == [(0, "0........."), (1, "1.........")]
        await control.finish("wrk-1", "job-1", 1, Outcome(0), chunks(2, 1))
        assert server.arrivals[-1][:3] == ("finish", "job-1", 1)
        assert control.outbox.size == 0


async def test_kept_while_the_server_is_down_then_delivered_in_order_once(
    autojump_clock: Clock,
) -> None:
    server = FakeServer()
    async with connected(server) as control:
        server.up = False
        started = trio.current_time()
        for first in range(0, 6, 2):
            await control.append_logs("wrk-1", "job-1", 1, chunks(first, 2))
        await control.finish("wrk-1", "job-1", 1, Outcome(3), chunks(6, 1))
        # nobody waited for the server: the job's slot is free, its reports are kept
        assert trio.current_time() - started < 1.0
        assert control.outbox.attempts() == {("job-1", 1)}
        assert server.arrivals == []
        await trio.sleep(60)  # the outage
        server.up = True
        with trio.fail_after(15):  # the backoff is capped at 10 s
            await control.outbox.wait_empty()
    assert server.arrivals[:-1] == [
        ("logs", "job-1", 1, [0, 1]),
        ("logs", "job-1", 1, [2, 3]),
        ("logs", "job-1", 1, [4, 5]),
    ]
    assert server.arrivals[-1][:3] == ("finish", "job-1", 1)
    assert server.arrivals[-1][3]["exit_code"] == 3
    assert [seq for seq, _ in server.stored("job-1")] == list(range(7))


async def test_an_answer_lost_on_the_way_is_sent_again(autojump_clock: Clock) -> None:
    server = FakeServer(lose_answer={"/api/v1/workers/wrk-1/reports"})
    async with connected(server) as control:
        await control.append_logs("wrk-1", "job-1", 1, chunks(0, 2))
        await control.finish("wrk-1", "job-1", 1, Outcome(0))
        await control.outbox.wait_empty()
    # the server got the chunks twice and kept them once (it ignores a seq it has)
    assert [a[:4] for a in server.arrivals[:2]] == [("logs", "job-1", 1, [0, 1])] * 2
    assert [seq for seq, _ in server.stored("job-1")] == [0, 1]


async def test_5xx_and_429_are_tried_again_honouring_retry_after(autojump_clock: Clock) -> None:
    server = FakeServer()
    async with connected(server) as control:
        server.statuses = [(503, {}), (429, {"Retry-After": "3"}), (502, {})]
        started = trio.current_time()
        await control.start("wrk-1", "job-1", 1)
        assert trio.current_time() - started >= 3.0
        assert [r.url.path for r in server.requests[-4:]] == ["/api/v1/workers/wrk-1/reports"] * 4


async def test_a_stale_attempt_is_refused_to_the_worker_loop(autojump_clock: Clock) -> None:
    server = FakeServer(stale={("job-1", 1)})
    async with connected(server) as control:
        with pytest.raises(StaleAttempt, match="the current attempt is 9"):
            await control.append_logs("wrk-1", "job-1", 1, chunks(0, 1))
        with pytest.raises(StaleAttempt):
            await control.start("wrk-1", "job-1", 1)
        # found out while the server was down and the caller had moved on: said next time
        server.stale = {("job-2", 1)}
        server.up = False
        await control.append_logs("wrk-1", "job-2", 1, chunks(0, 1))
        server.up = True
        await control.outbox.wait_empty()
        sent = len(server.requests)
        with pytest.raises(StaleAttempt):
            await control.append_logs("wrk-1", "job-2", 1, chunks(1, 1))
        with pytest.raises(StaleAttempt):
            await control.finish("wrk-1", "job-2", 1, Outcome(0))
        assert len(server.requests) == sent  # nothing more was sent about the attempt


async def test_an_unknown_job_is_job_not_found(autojump_clock: Clock) -> None:
    server = FakeServer(missing={"job-9"})
    async with connected(server) as control:
        with pytest.raises(JobNotFound):
            await control.start("wrk-1", "job-9", 1)
        with pytest.raises(JobNotFound):
            await control.finish("wrk-1", "job-9", 1, Outcome(0))


async def test_a_full_outbox_drops_the_oldest_output_never_a_final_result(
    autojump_clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    server = FakeServer()
    async with connected(server, outbox_bytes=3000) as control:
        server.up = False
        with caplog.at_level(logging.WARNING, logger="hodei.agent"):
            for seq in range(10):  # ten reports of ~560 bytes: about five fit
                await control.append_logs("wrk-1", "job-1", 1, chunks(seq, 1, size=500))
            await control.finish("wrk-1", "job-1", 1, Outcome(0), chunks(10, 1, size=500))
            assert control.outbox.size <= 3000
            server.up = True
            await control.outbox.wait_empty()
    assert "outbox is full" in caplog.text
    assert "characters of output were dropped" in caplog.text
    stored = dict(server.stored("job-1"))
    assert server.arrivals[-1][:3] == ("finish", "job-1", 1)
    assert stored[10].startswith("10.")  # the final result's output, whole
    kept = [seq for seq, data in stored.items() if data.startswith(f"{seq}.")]
    noted = [seq for seq, data in stored.items() if "output dropped" in data]
    # the oldest gave way to a note at their place; the newest are whole
    assert noted == list(range(len(noted)))
    assert kept == list(range(len(noted), 11))
    assert len(noted) >= 5


async def test_a_forgotten_token_registers_again_keeping_the_running_jobs(
    autojump_clock: Clock,
) -> None:
    server = FakeServer()
    async with connected(server) as control:
        await control.start("wrk-1", "job-1", 1)
        await control.poll("wrk-1", [("job-1", 1), ("job-2", 1)], 0)
        server.forget_tokens()  # a server restarted with a new key
        instructions = await control.heartbeat("wrk-1", [("job-1", 1)])
        assert instructions == Instructions(heartbeat_interval_s=5.0)
        assert len(server.registrations) == 2
        again = server.registrations[-1]
        assert again["name"] == "w1"
        assert {(r["job_id"], r["attempt"]) for r in again["running"]} >= {("job-1", 1)}
        # the reports that follow carry the new token
        await control.append_logs("wrk-1", "job-1", 1, chunks(0, 1))
        assert server.requests[-1].headers["authorization"] == "Bearer wrk-1.1"


async def test_a_forgotten_worker_registers_again_under_its_new_id(autojump_clock: Clock) -> None:
    server = FakeServer()
    async with connected(server) as control:
        assert control.worker.id == "wrk-1"
        server.forget_workers()  # a server restarted on an empty store
        assert await control.poll("wrk-1", [], 5) == Instructions()
        assert control.worker.id == "wrk-2"
        assert server.requests[-1].url.path == "/api/v1/workers/wrk-2/poll"


async def test_a_poll_outlives_its_wait_and_survives_an_outage(autojump_clock: Clock) -> None:
    server = FakeServer()
    async with connected(server) as control:
        await control.poll("wrk-1", [], 25)
        poll = server.requests[-1]
        assert poll.url.params["wait"] == "25.0"
        assert poll.extensions["timeout"]["read"] == 35.0  # the wait and some grace
        server.up = False
        started = trio.current_time()
        assert await control.poll("wrk-1", [], 25) == Instructions()
        assert trio.current_time() - started == pytest.approx(25.0)


async def test_leave_waits_until_the_outbox_is_delivered(autojump_clock: Clock) -> None:
    server = FakeServer()
    async with connected(server) as control:
        server.up = False
        await control.finish("wrk-1", "job-1", 1, Outcome(0), chunks(0, 1))

        async def restore() -> None:
            await trio.sleep(20)
            server.up = True

        async with trio.open_nursery() as nursery:
            nursery.start_soon(restore)
            await control.leave("wrk-1")
    assert [a[0] for a in server.arrivals] == ["finish", "leave"]


async def test_a_report_too_large_for_the_server_goes_in_pieces() -> None:
    server = FakeServer(too_large=2)
    async with connected(server) as control:
        await control.append_logs("wrk-1", "job-1", 1, chunks(0, 5))
    assert [seq for seq, _ in server.stored("job-1")] == [0, 1, 2, 3, 4]


async def test_a_refused_agent_token_is_an_error() -> None:
    server = FakeServer()
    control = HttpControlPlane(
        "http://hodei.test", "wrong-0123456789", transport=server.transport()
    )
    async with control:
        with pytest.raises(Refused, match="refused the agent token"):
            await control.register(WorkerRegistration(name="w1"))


async def test_waiting_reports_go_as_soon_as_any_call_gets_through(autojump_clock: Clock) -> None:
    server = FakeServer()
    slow = {"backoff_base_s": 60, "backoff_cap_s": 60, "random": lambda: 0.99}
    async with connected(server, **slow) as control:  # every retry would wait a minute
        server.up = False
        await control.append_logs("wrk-1", "job-1", 1, chunks(0, 1))
        await trio.sleep(5)
        server.up = True
        started = trio.current_time()
        await control.heartbeat("wrk-1", [])  # gets through
        await control.outbox.wait_empty()
        assert trio.current_time() - started < 1.0
    assert [seq for seq, _ in server.stored("job-1")] == [0]


class _Talker:
    """An executor whose job talks until it is stopped."""

    def __init__(self) -> None:
        self.stopped = trio.Event()

    async def run(self, job: Job, logs: LogSink) -> int:
        try:
            while True:
                await logs.write(Stream.STDOUT, "still here\n")
                await trio.sleep(1)
        finally:
            self.stopped.set()


async def test_a_job_whose_reports_are_refused_mid_run_is_stopped_and_the_agent_goes_on(
    autojump_clock: Clock,
) -> None:
    # NOTE: fails until hodei_core's WorkerLoop marks a job it stops after a refused log
    # report as cancelled: it takes the stop for a timeout and formats timeout_s=None
    server = FakeServer(poll_answers=[{"jobs": [job_json("job-1")], "cancel": [], "drain": False}])
    talker = _Talker()
    async with connected(server) as control:
        loop = WorkerLoop(control, talker, WorkerRegistration(name="w1"))
        async with trio.open_nursery() as nursery:
            await nursery.start(loop.run)
            await trio.sleep(3)
            server.stale = {("job-1", 1)}  # given to another worker meanwhile
            with trio.fail_after(5):
                await talker.stopped.wait()
            loop.drain()
            control.interrupt_poll()
    assert server.arrivals[-1] == ("leave",)


async def test_a_poll_that_fails_after_its_deadline_returns_empty(autojump_clock: Clock) -> None:
    server = FakeServer()

    async def polls_hang(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/poll"):
            await trio.sleep(40)  # longer than the wait: the read times out after it
            raise httpx.ReadTimeout("no answer", request=request)
        return await server.handle(request)

    transport = httpx.MockTransport(polls_hang)
    async with HttpControlPlane("http://hodei.test", AGENT_TOKEN, transport=transport) as control:
        await control.register(WorkerRegistration(name="w1"))
        assert await control.poll("wrk-1", [], 25) == Instructions()


async def test_the_worker_keeps_the_heartbeat_pace_the_server_asks_for(
    autojump_clock: Clock,
) -> None:
    server = FakeServer(heartbeat_interval_s=12.0)
    async with connected(server) as control:
        loop = WorkerLoop(control, _Talker(), WorkerRegistration(name="w1"))
        async with trio.open_nursery() as nursery:
            await nursery.start(loop.run)
            await trio.sleep(42)  # 5 s (the pace it started with), then 12 s apart
            first = server.heartbeats[0]
            assert [round(b - first, 3) for b in server.heartbeats] == [0, 12, 24, 36]
            server.heartbeat_interval_s = 0  # nonsense is kept within bounds, not obeyed
            await trio.sleep(12)
            assert round(server.heartbeats[-1] - server.heartbeats[-2], 3) == 0.1
            server.heartbeat_interval_s = 3.0
            loop.drain()
            control.interrupt_poll()


async def test_a_pinned_heartbeat_pace_is_kept_whatever_the_server_asks(
    autojump_clock: Clock,
) -> None:
    server = FakeServer(heartbeat_interval_s=12.0)
    async with connected(server) as control:
        settings = WorkerSettings(heartbeat_interval_s=3.0, pinned_heartbeat=True)
        loop = WorkerLoop(control, _Talker(), WorkerRegistration(name="w1"), settings=settings)
        async with trio.open_nursery() as nursery:
            await nursery.start(loop.run)
            await trio.sleep(10)
            first = server.heartbeats[0]
            assert [round(b - first, 3) for b in server.heartbeats] == [0, 3, 6]
            loop.drain()
            control.interrupt_poll()


@pytest.mark.parametrize(("asked", "kept"), [(0.0, 0.1), (-3.0, 0.1), (1e9, 600.0), (7.5, 7.5)])
def test_a_registration_answer_sets_a_bounded_pace(asked: float, kept: float) -> None:
    answer = {
        "worker": worker_json("wrk-1", "w1"),
        "token": "wrk-1.mac",
        "heartbeat_interval_s": asked,
        "poll_wait_s": 25.0,
        "lost_after_s": 30.0,
    }
    assert registered_from(answer).heartbeat_interval_s == kept
