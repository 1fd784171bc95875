"""The reporter: an agent's job reports (starts, output, ends) sent several to a request to
``/workers/{id}/reports``, each with its own answer, through outages, lost and garbled answers,
and the agent closing. Against the fake server behind ``httpx.MockTransport``; no socket."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from hodei_agent._reporter import Reporter
from hodei_agent._retry import Unavailable
from hodei_agent._wire import BadAnswer, start_json
from hodei_core import Outcome
from hodei_core.errors import HodeiError, JobNotFound, StaleAttempt

from ._fake_server import FakeServer
from ._reporting import REPORTS, Clock, Held, chunks, connected, outcome_of, paths


async def test_starts_asked_together_share_a_request(autojump_clock: Clock) -> None:
    server = FakeServer()
    async with connected(server) as control:
        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(control.start, "wrk-1", f"job-{n}", 1)
        assert control.reporter.requests < control.reporter.reports == 4
    assert max(server.batch_sizes) > 1
    assert sum(server.batch_sizes) == 4
    assert len(server.batch_sizes) < 4
    assert sorted(server.arrivals) == [("start", f"job-{n}", 1) for n in range(4)]
    assert paths(server) == [REPORTS] * len(server.batch_sizes)


async def test_four_jobs_starting_and_ending_together_take_two_requests(
    autojump_clock: Clock,
) -> None:
    server = FakeServer()
    async with connected(server) as control:
        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(control.start, "wrk-1", f"job-{n}", 1)
        async with trio.open_nursery() as nursery:
            for n in range(4):
                outcome = Outcome(n)
                nursery.start_soon(control.finish, "wrk-1", f"job-{n}", 1, outcome, chunks(0, 1))
        await control.outbox.wait_empty()
    assert server.batch_sizes == [4, 4]
    finishes = sorted((*a[:3], a[3]["exit_code"]) for a in server.arrivals if a[0] == "finish")
    assert finishes == [("finish", f"job-{n}", 1, n) for n in range(4)]
    assert all(server.stored(f"job-{n}") == [(0, "0.........")] for n in range(4))


async def test_a_lone_report_goes_at_once_alone(autojump_clock: Clock) -> None:
    server = FakeServer()
    async with connected(server) as control:
        before = trio.current_time()
        await control.start("wrk-1", "job-1", 1)
        # nothing waited for company: on the autojump clock any wait would show
        assert trio.current_time() == before
        assert server.arrivals == [("start", "job-1", 1)]
        await control.append_logs("wrk-1", "job-1", 1, chunks(0, 2))
        assert trio.current_time() == before
    assert server.batch_sizes == [1, 1]
    assert paths(server) == [REPORTS, REPORTS]
    assert server.stored("job-1") == [(0, "0........."), (1, "1.........")]


async def test_what_is_asked_while_a_batch_is_in_flight_goes_in_the_next() -> None:
    server = FakeServer()
    held = Held(server)
    async with connected(server, held.transport()) as control, trio.open_nursery() as nursery:
        nursery.start_soon(control.start, "wrk-1", "job-0", 1)
        await trio.testing.wait_all_tasks_blocked()
        assert held.holding == 1  # job-0's start is on its way
        for n in range(1, 4):
            nursery.start_soon(control.start, "wrk-1", f"job-{n}", 1)
        nursery.start_soon(control.append_logs, "wrk-1", "job-0", 1, chunks(0, 2))
        await trio.testing.wait_all_tasks_blocked()
        assert held.holding == 1  # the others wait: one request at a time
        held.release()
    assert server.batch_sizes == [1, 4]
    assert server.arrivals[0] == ("start", "job-0", 1)
    assert sorted(server.arrivals[1:]) == [
        ("logs", "job-0", 1, [0, 1]),
        ("start", "job-1", 1),
        ("start", "job-2", 1),
        ("start", "job-3", 1),
    ]


async def test_a_batch_keeps_within_its_bounds() -> None:
    server = FakeServer()
    async with connected(server) as control, trio.open_nursery() as nursery:
        by_bytes = Reporter(control.session, nursery, max_bytes=1000)
        by_count = Reporter(control.session, nursery, max_reports=2)
        async with trio.open_nursery() as callers:
            for n in range(5):
                key = (f"job-{n}", 1)
                callers.start_soon(by_bytes.send, start_json(*key), key, 400)
        assert server.batch_sizes == [2, 2, 1]
        assert (by_bytes.requests, by_bytes.reports) == (3, 5)
        async with trio.open_nursery() as callers:
            for n in range(5, 10):
                key = (f"job-{n}", 1)
                callers.start_soon(by_count.send, start_json(*key), key, 100)
        assert server.batch_sizes == [2, 2, 1, 2, 2, 1]
    assert sorted(server.arrivals) == sorted(("start", f"job-{n}", 1) for n in range(10))


# -- each report its own answer --------------------------------------------------------------


async def test_in_a_batch_a_stale_or_unknown_attempt_is_refused_alone() -> None:
    server = FakeServer(stale={("job-2", 1)}, missing={"job-9"})
    held = Held(server)
    outcomes: dict[str, BaseException | None] = {}
    async with connected(server, held.transport()) as control:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(control.start, "wrk-1", "job-0", 1)
            await trio.testing.wait_all_tasks_blocked()
            calls: dict[str, tuple[Any, ...]] = {
                "start 1": (control.start, "wrk-1", "job-1", 1),
                "start 2": (control.start, "wrk-1", "job-2", 1),
                "start 9": (control.start, "wrk-1", "job-9", 1),
                "logs 9": (control.append_logs, "wrk-1", "job-9", 1, chunks(0, 1)),
                "finish 3": (control.finish, "wrk-1", "job-3", 1, Outcome(0), chunks(0, 1)),
            }
            for name, call in calls.items():
                nursery.start_soon(outcome_of, outcomes, name, *call)
            await trio.testing.wait_all_tasks_blocked()
            held.release()
        await control.outbox.wait_empty()
    assert server.batch_sizes == [1, 5]  # all five went together
    assert isinstance(outcomes["start 2"], StaleAttempt)
    assert "the current attempt is 9" in str(outcomes["start 2"])
    assert isinstance(outcomes["start 9"], JobNotFound)
    assert isinstance(outcomes["logs 9"], JobNotFound)
    assert outcomes["start 1"] is None
    assert outcomes["finish 3"] is None
    assert sorted(a[:3] for a in server.arrivals) == [
        ("finish", "job-3", 1),
        ("start", "job-0", 1),
        ("start", "job-1", 1),
    ]
    assert server.stored("job-3") == [(0, "0.........")]
    assert paths(server) == [REPORTS, REPORTS]  # nothing was sent again alone


class BusyFor(FakeServer):
    """A fake server that answers 503 in a batch's result for the first report about each of
    the jobs ``busy`` (without applying it): the store could not take it now."""

    busy: set[str]

    def _reports(self, request: httpx.Request) -> httpx.Response:
        reports = json.loads(request.content)["reports"]
        busy = [r["job_id"] in self.busy for r in reports]
        self.busy -= {r["job_id"] for r in reports}
        kept = [r for r, b in zip(reports, busy, strict=True) if not b]
        request = httpx.Request("POST", request.url, json={"reports": kept})
        answer = super()._reports(request).json()["results"]
        results = iter(answer)
        later = {"status": 503, "error": {"code": "unavailable", "message": "", "details": []}}
        return httpx.Response(200, json={"results": [later if b else next(results) for b in busy]})


async def test_a_report_the_server_could_not_apply_now_is_tried_again(
    autojump_clock: Clock,
) -> None:
    server = BusyFor()
    server.busy = {"job-2"}
    async with connected(server) as control, trio.open_nursery() as nursery:
        for n in range(1, 4):
            nursery.start_soon(control.start, "wrk-1", f"job-{n}", 1)
    # three reports, then the one refused "for now" again; the fake counts what it applied
    assert (control.reporter.requests, control.reporter.reports) == (2, 4)
    assert server.arrivals.count(("start", "job-2", 1)) == 1
    assert sorted(server.arrivals) == [("start", f"job-{n}", 1) for n in range(1, 4)]


# -- sent alone --------------------------------------------------------------------------------


async def test_reports_waiting_through_an_outage_arrive_once_after_it(
    autojump_clock: Clock,
) -> None:
    server = FakeServer()
    async with connected(server) as control:
        await control.start("wrk-1", "job-2", 1)
        server.up = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(control.start, "wrk-1", "job-1", 1)
            await trio.sleep(1)  # the start failed and is tried again, with backoff
            started = trio.current_time()
            await control.append_logs("wrk-1", "job-2", 1, chunks(0, 2))
            await control.finish("wrk-1", "job-2", 1, Outcome(0), chunks(2, 1))
            assert trio.current_time() - started < 1.0  # kept, not waited for
            assert server.arrivals == [("start", "job-2", 1)]
            await trio.sleep(60)  # the outage
            tried = paths(server).count(REPORTS)
            assert tried > 4  # the start and the outbox kept trying
            server.up = True
            with trio.fail_after(15):  # the backoff is capped at 10 s
                await control.outbox.wait_empty()
                # (and the start, in the nursery)
        assert control.outbox.size == 0
    assert server.arrivals[0] == ("start", "job-2", 1)
    assert sorted(a[:4] for a in server.arrivals[1:] if a[0] != "finish") == [
        ("logs", "job-2", 1, [0, 1]),
        ("start", "job-1", 1),
    ]
    assert [a[:3] for a in server.arrivals if a[0] == "finish"] == [("finish", "job-2", 1)]
    kinds = [a[:3] for a in server.arrivals]
    assert kinds.index(("finish", "job-2", 1)) > kinds.index(("logs", "job-2", 1))
    assert len(server.arrivals) == 4  # no answer was lost: nothing twice
    assert [seq for seq, _ in server.stored("job-2")] == [0, 1, 2]
    # no report fell back to its own endpoint
    assert set(paths(server)) == {REPORTS}


async def test_a_batch_whose_answer_is_lost_is_sent_again(autojump_clock: Clock) -> None:
    server = FakeServer(lose_answer={REPORTS})
    # the same backoff for both starts: they are tried again together
    async with (
        connected(server, random=lambda: 0.5) as control,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(control.start, "wrk-1", "job-1", 1)
        nursery.start_soon(control.start, "wrk-1", "job-2", 1)
    assert server.batch_sizes == [2, 2]
    # applied twice, as a lost answer explains; the server takes a second start as the first
    assert sorted(server.arrivals) == [("start", "job-1", 1)] * 2 + [("start", "job-2", 1)] * 2


def _drop_a_result(answer: httpx.Response) -> httpx.Response:
    body = answer.json()
    return httpx.Response(200, json={"results": body["results"][:-1]})


def _no_status(answer: httpx.Response) -> httpx.Response:
    body = answer.json()
    return httpx.Response(200, json={"results": [{"state": "ok"} for _ in body["results"]]})


def _not_json(answer: httpx.Response) -> httpx.Response:
    return httpx.Response(200, text="<html>a proxy's page</html>")


def _no_results(answer: httpx.Response) -> httpx.Response:
    return httpx.Response(200, json=[{"status": 200}])


class Garbled(FakeServer):
    """A fake server that applies a batch and then answers it wrongly (``garble``)."""

    garble: Callable[[httpx.Response], httpx.Response]

    def _reports(self, request: httpx.Request) -> httpx.Response:
        return type(self).garble(super()._reports(request))


@pytest.mark.parametrize("garble", [_drop_a_result, _no_status, _not_json, _no_results])
async def test_a_malformed_answer_to_a_batch_is_an_error_not_a_hang(
    garble: Callable[[httpx.Response], httpx.Response],
    autojump_clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = type("GarbledNow", (Garbled,), {"garble": staticmethod(garble)})()
    outcomes: dict[str, BaseException | None] = {}
    async with connected(server) as control:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for n in range(1, 3):
                    start = (control.start, "wrk-1", f"job-{n}", 1)
                    nursery.start_soon(outcome_of, outcomes, f"start {n}", *start)
            assert server.batch_sizes == [2]
            assert all(isinstance(outcomes[f"start {n}"], BadAnswer) for n in (1, 2))
            assert isinstance(outcomes["start 1"], HodeiError)
            # the outbox gives up on the report, says so, and lets its caller go
            with caplog.at_level(logging.ERROR, logger="hodei.agent"):
                await control.append_logs("wrk-1", "job-1", 1, chunks(0, 1))
                await control.outbox.wait_empty()
    assert "malformed" in caplog.text or "no status" in caplog.text
    assert server.batch_sizes == [2, 1]


async def test_callers_are_not_left_waiting_when_the_reporter_closes() -> None:
    """The reporter's nursery is cancelled while one batch is on its way and another waits:
    neither caller may wait forever, nor be told its report was delivered."""
    server = FakeServer()
    held = Held(server)
    outcomes: dict[str, BaseException | None] = {}
    async with connected(server, held.transport()) as control:
        with trio.move_on_after(3) as waited:  # real seconds
            async with trio.open_nursery() as callers, trio.open_nursery() as nursery:
                reporter = Reporter(control.session, nursery)
                for n in (1, 2):
                    key = (f"job-{n}", 1)
                    send = (reporter.send, start_json(*key), key, 128)
                    callers.start_soon(outcome_of, outcomes, f"start {n}", *send)
                    await trio.testing.wait_all_tasks_blocked()
                assert held.holding == 1  # job-1's batch is on its way, job-2 waits
                nursery.cancel_scope.cancel()
    assert not waited.cancelled_caught, f"a caller waits forever; these ended: {outcomes}"
    assert server.arrivals == []
    assert isinstance(outcomes["start 2"], Unavailable)  # it waited for the next batch
    # the batch on its way was never answered: its caller must not hear "delivered"
    assert outcomes["start 1"] is not None, "a report never delivered was said delivered"
    assert isinstance(outcomes["start 1"], Unavailable)


async def test_starts_waiting_when_the_control_plane_closes_end() -> None:
    """``aclose`` while one batch of starts is on its way and another waits: each caller of
    ``start`` (the worker loop, outside the control plane) ends, none told "started"."""
    server = FakeServer()
    held = Held(server)
    outcomes: dict[str, BaseException | None] = {}
    transport = held.transport()
    with trio.move_on_after(3) as waited:  # real seconds
        async with (
            trio.open_nursery() as callers,
            connected(server, transport, random=lambda: 0.5) as control,
        ):
            for n in (1, 2, 3):
                start = (control.start, "wrk-1", f"job-{n}", 1)
                callers.start_soon(outcome_of, outcomes, f"start {n}", *start)
                await trio.testing.wait_all_tasks_blocked()
            assert held.holding == 1  # job-1's start is on its way, job-2's and job-3's wait
            # leaving closes the control plane, its reporter with it
    assert not waited.cancelled_caught, f"a caller waits forever; these ended: {outcomes}"
    assert server.arrivals == []
    assert set(outcomes) == {"start 1", "start 2", "start 3"}
    said_started = [name for name, outcome in outcomes.items() if outcome is None]
    assert said_started == [], f"never delivered, yet said started: {outcomes}"
