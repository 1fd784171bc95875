"""The four sequence diagrams over real HTTP: ``hodei server`` on its default SQLite file and
two ``hodei agent`` processes on loopback. Registration, pipelines (and a bad one), a
submitted job, a run; logs in order with stdout and stderr apart, exit codes, success and
failure."""

from __future__ import annotations

from typing import Any

from ._cluster import Cluster, until

# Output spaced out in time, so that its order across the two streams is the order written
# (each stream is read and sent on its own, in batches of up to 0.1 s).
_SPACED = "echo out-1; sleep 0.3; echo err-1 >&2; sleep 0.3; echo out-2; sleep 0.3; echo err-2 >&2"


def _streams(chunks: list[dict[str, Any]]) -> dict[str, str]:
    return {s: "".join(c["data"] for c in chunks if c["stream"] == s) for s in ("stdout", "stderr")}


async def test_the_sequence_diagrams_end_to_end(cluster: Cluster) -> None:
    await cluster.server()
    # configured without a store: the server's default, a SQLite file where it runs
    assert (cluster.tmp / "hodei.db").is_file()
    # registration: both agents appear in the fleet, online, with what they offer
    await cluster.agent("e2e-a", "--labels", "linux,a", "--slots", "2")
    await cluster.agent("e2e-b", "--labels", "linux,b", "--slots", "2")
    fleet = {w["name"]: w for w in (await cluster.users.get("/api/v1/workers")).json()["items"]}
    assert fleet["e2e-a"]["labels"] == ["a", "linux"]
    assert fleet["e2e-b"]["capacity"]["slots"] == 2
    ids = {name: worker["id"] for name, worker in fleet.items()}

    # a bad pipeline: 400, every problem with its path
    bad = await cluster.users.post(
        "/api/v1/pipelines",
        json={"name": "bad", "steps": [
            {"name": "a", "script": "true", "depends_on": ["nope"]},
            {"name": "a", "script": "true"},
        ]},
    )  # fmt: skip
    assert bad.status_code == 400, bad.text
    paths = {d["path"] for d in bad.json()["error"]["details"]}
    assert {"steps[0].depends_on[0]", "steps[1].name"} <= paths

    # submitted jobs: one succeeds, one fails with its exit code
    ok = await cluster.submit({"script": _SPACED, "labels": ["linux"]})
    failing = await cluster.submit({"command": ["sh", "-c", "echo failing >&2; exit 7"]})
    ok_job, failed_job = await cluster.finished(ok), await cluster.finished(failing)
    assert (ok_job["state"], ok_job["exit_code"]) == ("succeeded", 0)
    assert (failed_job["state"], failed_job["exit_code"]) == ("failed", 7)
    assert failed_job["failure"] == "script_failure"
    chunks = await cluster.chunks(ok)
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    assert "".join(c["data"] for c in chunks) == "out-1\nerr-1\nout-2\nerr-2\n"
    assert _streams(chunks) == {"stdout": "out-1\nout-2\n", "stderr": "err-1\nerr-2\n"}
    assert _streams(await cluster.chunks(failing)) == {"stdout": "", "stderr": "failing\n"}

    # a pipeline run: the failed step skips its dependents; steps go where their labels are
    created = await cluster.users.post(
        "/api/v1/pipelines",
        json={"name": "ship", "steps": [
            {"name": "build", "script": "echo building", "labels": ["a"]},
            {"name": "test", "script": "echo testing; exit 3", "depends_on": ["build"]},
            {"name": "deploy", "script": "echo deploying", "depends_on": ["test"]},
            {"name": "lint", "script": "echo linting >&2", "labels": ["b"]},
        ]},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    started = await cluster.users.post(f"/api/v1/pipelines/{created.json()['id']}/runs")
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]

    async def run_ended() -> dict[str, Any] | None:
        run: dict[str, Any] = (await cluster.users.get(f"/api/v1/runs/{run_id}")).json()
        return run if run["state"] != "running" else None

    run = await until(run_ended, "the run to end")
    steps = {s["name"]: s for s in run["steps"]}
    assert run["state"] == "failed"
    assert {name: s["state"] for name, s in steps.items()} == {
        "build": "succeeded", "test": "failed", "deploy": "skipped", "lint": "succeeded",
    }  # fmt: skip
    build = await cluster.finished(steps["build"]["job_id"])
    lint = await cluster.finished(steps["lint"]["job_id"])
    assert (build["worker_id"], lint["worker_id"]) == (ids["e2e-a"], ids["e2e-b"])
    assert _streams(await cluster.chunks(build["id"]))["stdout"] == "building\n"
    assert _streams(await cluster.chunks(lint["id"]))["stderr"] == "linting\n"
    test_job = await cluster.finished(steps["test"]["job_id"])
    assert (test_job["exit_code"], test_job["failure"]) == (3, "script_failure")
