"""The reporter's fallbacks: a report goes alone, on its own endpoint, when the server takes no
batches (404, 405), not one this large (413, or larger than a batch may be), or finds a batch
malformed (400). Against the fake server behind ``httpx.MockTransport``; no socket."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
import trio.testing

from hodei_agent._reporter import ALONE_FOR_S, Reporter, SendAlone
from hodei_agent._wire import start_json
from hodei_core import Outcome

from ._fake_server import FakeServer
from ._reporting import REPORTS, Held, chunks, connected, paths


class NotAllowed(FakeServer):
    """A server whose batch endpoint answers 405."""

    def _reports(self, request: httpx.Request) -> httpx.Response:
        error = {"code": "method_not_allowed", "message": "", "details": []}
        return httpx.Response(405, json={"error": error})


@pytest.mark.parametrize("status", [404, 405])
async def test_a_server_without_batches_gets_each_report_on_its_endpoint(status: int) -> None:
    server = FakeServer(batches=False) if status == 404 else NotAllowed()
    async with connected(server) as control:
        async with trio.open_nursery() as nursery:
            for n in range(1, 4):
                nursery.start_soon(control.start, "wrk-1", f"job-{n}", 1)
        await control.start("wrk-1", "job-4", 1)
        await control.append_logs("wrk-1", "job-1", 1, chunks(0, 2))
        await control.finish("wrk-1", "job-1", 1, Outcome(2), chunks(2, 1))
        await control.outbox.wait_empty()
    sent = paths(server)
    assert sent.count(REPORTS) == 1  # found out once, remembered
    assert sent[0] == REPORTS
    assert sorted(sent[1:4]) == [f"/api/v1/jobs/job-{n}/start" for n in range(1, 4)]
    assert sent[4:] == [
        "/api/v1/jobs/job-4/start",
        "/api/v1/jobs/job-1/logs",
        "/api/v1/jobs/job-1/finish",
    ]
    assert sorted(a for a in server.arrivals if a[0] == "start") == [
        ("start", f"job-{n}", 1) for n in range(1, 5)
    ]
    assert ("logs", "job-1", 1, [0, 1]) in server.arrivals
    assert server.arrivals[-1][:3] == ("finish", "job-1", 1)
    assert server.arrivals[-1][3]["exit_code"] == 2
    assert [seq for seq, _ in server.stored("job-1")] == [0, 1, 2]


async def test_batches_are_tried_again_a_while_after_a_404(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # the 404 may have come from an old server behind a load balancer, or a proxy
    server = FakeServer(batches=False)
    async with connected(server) as control:
        await control.start("wrk-1", "job-1", 1)
        await trio.sleep(ALONE_FOR_S - 1)
        await control.start("wrk-1", "job-2", 1)
        assert paths(server) == [REPORTS, "/api/v1/jobs/job-1/start", "/api/v1/jobs/job-2/start"]
        server.batches = True  # the server was upgraded meanwhile
        await trio.sleep(1)
        await control.start("wrk-1", "job-3", 1)
        assert paths(server)[3:] == [REPORTS]
        assert server.batch_sizes == [1]


async def test_a_batch_too_large_for_the_server_is_sent_report_by_report() -> None:
    server = FakeServer(too_large=1)
    held = Held(server)
    async with connected(server, held.transport()) as control:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(control.start, "wrk-1", "job-0", 1)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(control.start, "wrk-1", "job-2", 1)
            nursery.start_soon(control.append_logs, "wrk-1", "job-1", 1, chunks(0, 2))
            await trio.testing.wait_all_tasks_blocked()
            held.release()
        assert server.batch_sizes == [1, 2]  # the second answered 413
        assert ("start", "job-2", 1) in server.arrivals
        assert [seq for seq, _ in server.stored("job-1")] == [0, 1]
        # the logs halved on 413 on their own endpoint, as they always did
        assert [a for a in server.arrivals if a[0] == "logs"] == [
            ("logs", "job-1", 1, [0]),
            ("logs", "job-1", 1, [1]),
        ]
        # the start and the logs went side by side, each on its own endpoint
        assert sorted(paths(server)[2:]) == [
            "/api/v1/jobs/job-1/logs",  # both chunks: 413
            "/api/v1/jobs/job-1/logs",  # then one by one
            "/api/v1/jobs/job-1/logs",
            "/api/v1/jobs/job-2/start",
        ]
        # a 413 is about that batch: the next reports go in batches again
        await control.start("wrk-1", "job-3", 1)
        assert server.batch_sizes == [1, 2, 1]
        assert paths(server)[-1] == REPORTS


async def test_a_report_larger_than_a_batch_goes_alone() -> None:
    server = FakeServer()
    async with connected(server) as control:
        big = chunks(0, 1, size=300 * 1024)  # over the 256 KiB a batch carries
        await control.append_logs("wrk-1", "job-1", 1, big)
        assert paths(server) == ["/api/v1/jobs/job-1/logs"]
        assert server.batch_sizes == []
        assert server.arrivals == [("logs", "job-1", 1, [0])]
        assert server.stored("job-1") == [(0, big[0].data)]
        await control.append_logs("wrk-1", "job-1", 1, chunks(1, 1))  # a small one batches
        assert paths(server)[-1] == REPORTS
        # the reporter itself says so before sending anything
        async with trio.open_nursery() as nursery:
            small = Reporter(control.session, nursery, max_bytes=1000)
            sent = len(server.requests)
            with pytest.raises(SendAlone):
                await small.send(start_json("job-2", 1), ("job-2", 1), 1001)
            await small.send(start_json("job-2", 1), ("job-2", 1), 1000)
            assert len(server.requests) == sent + 1
    assert server.arrivals[-1] == ("start", "job-2", 1)


# -- outages, bad answers, closing -----------------------------------------------------------


class _RefusesPairs(FakeServer):
    """A server that finds any batch of more than one report malformed (400)."""

    def _reports(self, request: httpx.Request) -> httpx.Response:
        if len(json.loads(request.content)["reports"]) > 1:
            return httpx.Response(400, json={"error": {"code": "invalid", "message": "x"}})
        return super()._reports(request)


async def test_a_batch_refused_as_malformed_is_sent_report_by_report() -> None:
    # one bad report in a batch (a 400 for the whole body) must not drop the others
    server = _RefusesPairs()
    held = Held(server)
    async with connected(server, held.transport()) as control:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(control.start, "wrk-1", "job-0", 1)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(control.start, "wrk-1", "job-1", 1)
            nursery.start_soon(control.start, "wrk-1", "job-2", 1)
            await trio.testing.wait_all_tasks_blocked()
            held.release()
        assert server.batch_sizes == [1]  # the pair was refused before it counted
        starts = {a for a in server.arrivals if a[0] == "start"}
        assert starts == {("start", f"job-{n}", 1) for n in range(3)}
        assert sorted(paths(server)[-2:]) == [
            "/api/v1/jobs/job-1/start",
            "/api/v1/jobs/job-2/start",
        ]
        # a 400 says nothing of batches: the next report goes in one again
        await control.start("wrk-1", "job-3", 1)
        assert paths(server)[-1] == REPORTS
