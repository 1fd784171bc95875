"""What goes wrong, with real processes: a job cancelled mid-run, an agent killed, the server
restarted, a worker's token used for another worker, an agent told to stop."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from hodei_agent import HttpControlPlane
from hodei_core import Outcome, WorkerRegistration
from hodei_core.errors import StaleAttempt

from ._cluster import AGENT, Cluster, alive, until

# Six processes in the job's tree: its shell, a child, a subshell and its child, another
# shell and its child; each writes its pid.
_TREE = """
sleep 60 & echo $! >> "$PIDS"
(sleep 60 & echo $! >> "$PIDS"; wait) & echo $! >> "$PIDS"
sh -c 'sleep 60 & echo $! >> "$PIDS"; wait' & echo $! >> "$PIDS"
echo $$ >> "$PIDS"
echo ready
wait
"""


async def _tree(pids_file: Path) -> list[int]:
    """The pids of ``_TREE``'s processes, once they have all started."""

    async def six_pids() -> list[int] | None:
        lines = pids_file.read_text().split() if pids_file.exists() else []
        return [int(pid) for pid in lines] if len(lines) == 6 else None

    return await until(six_pids, "the job's processes to start")


async def test_cancel_kills_the_jobs_whole_process_tree_within_2s(
    cluster: Cluster, tmp_path: Path
) -> None:
    await cluster.server()
    await cluster.agent("cancel-a")
    pids_file = tmp_path / "pids"
    job_id = await cluster.submit({"script": _TREE, "env": {"PIDS": str(pids_file)}})

    pids = await _tree(pids_file)
    await cluster.job(job_id, lambda job: job["state"] == "running")
    assert all(alive(pid) for pid in pids)
    cancelled = await cluster.users.post(f"/api/v1/jobs/{job_id}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    asked = trio.current_time()

    async def all_dead() -> bool:
        return not any(alive(pid) for pid in pids)

    await until(all_dead, "the job's processes to die", timeout_s=5)
    assert trio.current_time() - asked < 2.0
    job = await cluster.finished(job_id)
    assert job["state"] == "cancelled"


# Attempt 1 runs until its agent is gone (its parent), attempt 2 succeeds at once.
_UNTIL_AGENT_DIES = """
echo "attempt $HODEI_ATTEMPT"
if [ "$HODEI_ATTEMPT" = 1 ]; then
    while kill -0 $PPID 2>/dev/null; do sleep 0.1; done
    exit 1
fi
"""


async def test_a_killed_agents_job_goes_to_the_other_agent_within_lost_after_s(
    cluster: Cluster,
) -> None:
    lost_after_s = 2.0
    await cluster.server(cluster.config(lost_after_s=lost_after_s, heartbeat_interval_s=0.4))
    agents = {name: await cluster.agent(name) for name in ("kill-a", "kill-b")}
    ids = {(await cluster.worker(name, "online"))["id"]: name for name in agents}
    job_id = await cluster.submit({"script": _UNTIL_AGENT_DIES, "retries": 1})
    running = await cluster.job(job_id, lambda job: job["state"] == "running")
    victim = ids[running["worker_id"]]
    (survivor,) = set(agents) - {victim}

    agents[victim].send_signal(signal.SIGKILL)
    killed = trio.current_time()
    moved = await cluster.job(job_id, lambda job: job["attempt"] == 2 and job["worker_id"])
    # lost lost_after_s after its last sign of life (before the kill), give or take the
    # reaper's floor of lost_after_s / 20; then requeued, assigned and polled by the survivor
    assert trio.current_time() - killed < lost_after_s * 1.05 + 0.75
    assert ids[moved["worker_id"]] == survivor
    job = await cluster.finished(job_id)
    assert (job["state"], job["attempt"]) == ("succeeded", 2)
    assert "".join(c["data"] for c in await cluster.chunks(job_id)) == "attempt 2\n"
    assert (await cluster.worker(victim, "lost"))["name"] == victim


# Output on both streams for about two seconds; then a file says the job is over.
_CHATTY = """
for i in $(seq 1 20); do echo "out $i"; echo "err $i" >&2; sleep 0.1; done
touch "$DONE"
"""


def durable_store(tmp_path: Path) -> str:
    """The store that outlives the server process: a SQLite file."""
    return f"sqlite:///{tmp_path / 'hodei.db'}"


async def test_a_server_restart_mid_job_loses_and_duplicates_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    config = cluster.config(store=durable_store(tmp_path), heartbeat_interval_s=0.5)
    server = await cluster.server(config)
    await cluster.agent("restart-a")
    worker = await cluster.worker("restart-a", "online")
    done = tmp_path / "done"
    job_id = await cluster.submit({"script": _CHATTY, "env": {"DONE": str(done)}})

    async def some_output() -> bool:
        return bool(await cluster.chunks(job_id))

    await until(some_output, "the job's first output")
    server.send_signal(signal.SIGKILL)
    await server.wait()

    async def job_over() -> bool:
        return done.exists()

    # it ends, and its agent tries to report that, during the server's outage (starting
    # a server takes longer than ending a shell)
    await until(job_over, "the job to end while the server is down")
    await cluster.server(config)
    job = await cluster.finished(job_id)
    assert (job["state"], job["attempt"], job["exit_code"]) == ("succeeded", 1, 0)
    chunks = await cluster.chunks(job_id)
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    for stream, word in (("stdout", "out"), ("stderr", "err")):
        text = "".join(c["data"] for c in chunks if c["stream"] == stream)
        assert text == "".join(f"{word} {i}\n" for i in range(1, 21))
    assert job["worker_id"] == worker["id"]
    assert (await cluster.worker("restart-a", "online"))["id"] == worker["id"]  # back, the same


async def test_sigterm_drains_finishes_the_running_job_then_leaves(cluster: Cluster) -> None:
    await cluster.server()
    agent = await cluster.agent("drain-a", "--labels", "drain")
    job_id = await cluster.submit({"script": "sleep 1; echo finished", "labels": ["drain"]})
    await cluster.job(job_id, lambda job: job["state"] == "running")
    agent.send_signal(signal.SIGTERM)
    await cluster.worker("drain-a", "draining")
    later = await cluster.submit({"script": "echo too late", "labels": ["drain"]})
    with trio.fail_after(10):
        assert await agent.wait() == 0
    job = await cluster.finished(job_id)
    assert job["state"] == "succeeded"
    assert "".join(c["data"] for c in await cluster.chunks(job_id)) == "finished\n"
    await cluster.worker("drain-a", "offline")
    assert (await cluster.users.get(f"/api/v1/jobs/{later}")).json()["worker_id"] is None


async def test_a_workers_token_is_refused_on_another_workers_calls(cluster: Cluster) -> None:
    await cluster.server()
    planes = {name: HttpControlPlane(cluster.url, AGENT) for name in ("scope-a", "scope-b")}
    async with planes["scope-a"] as a, planes["scope-b"] as b:
        await a.register(WorkerRegistration(name="scope-a", labels={"a"}))
        await b.register(WorkerRegistration(name="scope-b", labels={"b"}))
        job_id = await cluster.submit({"script": "true", "labels": ["b"]})
        (job,) = (await b.poll(b.worker.id, [], 5)).jobs
        assert job.id == job_id
        # a's reports about b's job are refused (the fence names the worker too)
        with pytest.raises(StaleAttempt):
            await a.start(a.worker.id, job_id, 1)
        with pytest.raises(StaleAttempt):
            await a.finish(a.worker.id, job_id, 1, Outcome(0))
        # and a's token opens none of b's own calls
        assert a.registered is not None
        stolen = {"Authorization": f"Bearer {a.registered.token}"}
        for call in ("heartbeat", "poll?wait=0", "leave"):
            answer = await cluster.users.post(
                f"/api/v1/workers/{b.worker.id}/{call}", headers=stolen
            )
            assert answer.status_code == 403, answer.text
        await b.start(b.worker.id, job_id, 1)
        await b.finish(b.worker.id, job_id, 1, Outcome(0))
    assert (await cluster.finished(job_id))["state"] == "succeeded"


async def test_a_second_signal_stops_at_once_killing_the_jobs(
    cluster: Cluster, tmp_path: Path
) -> None:
    await cluster.server()
    agent = await cluster.agent("stop-a")
    pids_file = tmp_path / "pids"
    job_id = await cluster.submit({"script": _TREE, "env": {"PIDS": str(pids_file)}})

    pids = await _tree(pids_file)
    agent.send_signal(signal.SIGINT)
    await cluster.worker("stop-a", "draining")  # the first signal was seen: it drains
    agent.send_signal(signal.SIGINT)
    with trio.fail_after(10):
        assert await agent.wait() == 130
    assert not any(alive(pid) for pid in pids)
    # it left on its way out: its job is not waiting for lost_after_s to be given up
    await cluster.worker("stop-a", "offline")
    job = await cluster.finished(job_id)
    assert (job["state"], job["failure"]) == ("failed", "worker_lost")
