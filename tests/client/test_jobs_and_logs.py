"""``hodei submit``, ``hodei jobs`` and ``hodei logs`` against a real server whose worker runs
real processes."""

from __future__ import annotations

import json
from contextlib import aclosing
from pathlib import Path

import pytest
import trio

from hodei_http.client import HodeiClient

from .conftest import TINY, RunCommand, columns, until_end

FAILING = ["sh", "-c", "echo out; echo err >&2; exit 3"]


async def test_submit_prints_the_id_of_the_queued_job(
    hodei: RunCommand, client: HodeiClient
) -> None:
    status, out, err = await hodei(
        "submit", "--name", "greet", "--label", "x", "--env", "WHO=you", "--env", "A=b=c",
        "--secret", "S=hunter2", "--timeout", "30", "--retries", "2", "--priority", "5",
        "--", "sh", "-c", "echo hello $WHO",
    )  # fmt: skip
    assert (status, err) == (0, "")
    job = await client.get_job(out.strip())
    assert out == job["id"] + "\n"
    spec = job["spec"]
    assert spec["command"] == ["sh", "-c", "echo hello $WHO"]
    assert (spec["name"], spec["labels"], spec["env"], spec["secrets"]) == (
        "greet", ["x"], {"WHO": "you", "A": "b=c"}, {"S": "***"},
    )  # fmt: skip
    assert (spec["timeout_s"], spec["retries"], spec["priority"]) == (30.0, 2, 5)


async def test_submit_wait_follows_the_log_and_exits_with_the_jobs_code(
    hodei: RunCommand,
) -> None:
    status, out, err = await hodei("submit", "--wait", "--", *FAILING)
    job_id, log = out.split("\n", 1)
    assert (status, log) == (3, "out\n")
    assert err == f"err\nhodei: job {job_id} failed with exit code 3\n"
    # a command's own options are its own, without `--` too
    status, out, err = await hodei("submit", "--wait", "echo", "-n", "--wait")
    assert (status, out.split("\n", 1)[1], err) == (0, "--wait", "")
    status, out, err = await hodei("submit", "--wait", "--script", "echo fine")
    assert (status, out.split("\n", 1)[1], err) == (0, "fine\n", "")


async def test_submit_wait_json_prints_the_job_then_each_event(hodei: RunCommand) -> None:
    status, out, _ = await hodei("submit", "--wait", "--json", "--script", "echo a; exit 2")
    first, *events = [json.loads(line) for line in out.splitlines()]
    assert status == 2
    assert first["state"] == "queued"
    assert [(e["event"], e["data"].get("data")) for e in events] == [
        ("log", "a\n"), ("end", None),
    ]  # fmt: skip
    assert events[-1]["data"]["exit_code"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "hodei: give a command after -- or --script TEXT (one of them)\n"),
        (["--script", "x", "--", "y"], "hodei: give a command after -- or --script TEXT (one"),
        (["--env", "NOEQUALS", "--", "true"], "hodei: --env wants KEY=VALUE, not 'NOEQUALS'\n"),
        (["--secret", "=v", "--", "true"], "hodei: --secret wants KEY=VALUE, not '=v'\n"),
    ],
)
async def test_submit_usage_errors_are_one_line_and_exit_2(
    hodei: RunCommand, argv: list[str], message: str
) -> None:
    status, out, err = await hodei("submit", *argv)
    assert (status, out) == (2, "")
    assert err.startswith(message) and err.count("\n") == 1


async def test_a_refused_job_spec_prints_every_problem_and_exits_2(hodei: RunCommand) -> None:
    status, out, err = await hodei("submit", "--timeout", "-1", "--retries", "-2", "--", "true")
    assert (status, out) == (2, "")
    first, *problems = err.splitlines()
    assert first == "hodei: job spec is invalid (2 problems)"
    assert sorted(p.split(":")[0] for p in problems) == ["  retries", "  timeout_s"]


async def test_over_quota_says_when_to_retry(hodei: RunCommand) -> None:
    assert (await hodei("submit", "--", "true", token=TINY))[0] == 0
    status, out, err = await hodei("submit", "--", "true", token=TINY)
    assert (status, out) == (1, "")
    assert err.startswith("hodei: ") and err.endswith(" s)\n") and "(retry in " in err
    assert err.count("\n") == 1


async def test_jobs_list_is_an_aligned_table(hodei: RunCommand, client: HodeiClient) -> None:
    ok = await client.submit_job({"script": "true", "name": "ok"})
    bad = await client.submit_job({"command": FAILING})
    await until_end(client, ok["id"])
    await until_end(client, bad["id"])
    status, out, err = await hodei("jobs", "list")
    assert (status, err) == (0, "")
    assert out.splitlines()[0].split() == [
        "ID", "NAME", "STATE", "ATTEMPT", "WORKER", "EXIT", "AGE",
    ]  # fmt: skip
    rows = columns(out)
    assert rows == [
        {"ID": ok["id"], "NAME": "ok", "STATE": "succeeded", "ATTEMPT": "1",
         "WORKER": "embedded-1", "EXIT": "0", "AGE": rows[0]["AGE"]},
        {"ID": bad["id"], "NAME": "", "STATE": "failed", "ATTEMPT": "1",
         "WORKER": "embedded-1", "EXIT": "3", "AGE": rows[1]["AGE"]},
    ]  # fmt: skip
    assert all(row["AGE"].endswith("s") for row in rows)
    status, out, _ = await hodei("jobs", "list", "--state", "failed")
    assert [row["ID"] for row in columns(out)] == [bad["id"]]
    status, out, _ = await hodei("jobs", "--json", "list", "--limit", "1")
    page = json.loads(out)
    assert [job["id"] for job in page["items"]] == [ok["id"]]
    assert page["next_offset"] == 1
    status, out, _ = await hodei("jobs", "list", "--run", "run-none")
    assert out == "ID  NAME  STATE  ATTEMPT  WORKER  EXIT  AGE\n"


async def test_jobs_list_with_an_unknown_state_is_a_usage_error(hodei: RunCommand) -> None:
    status, out, err = await hodei("jobs", "list", "--state", "done")
    assert (status, out) == (2, "")
    assert err.startswith("hodei: bad query parameter\n  state: unknown state 'done'; one of")


async def test_jobs_show_and_its_json(hodei: RunCommand, client: HodeiClient) -> None:
    job = await client.submit_job({"command": FAILING, "env": {"A": "1"}})
    await until_end(client, job["id"])
    status, out, err = await hodei("jobs", "show", job["id"])
    assert (status, err) == (0, "")
    fields = dict(line.split(": ", 1) for line in out.splitlines())
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    assert fields["id"] == job["id"]
    assert fields["state"] == "failed (script_failure)"
    assert fields["exit code"] == "3"
    assert fields["runs"] == "sh -c 'echo out; echo err >&2; exit 3'"
    assert fields["env"] == "A=1"
    assert fields["finished"].endswith(" ago)")
    status, out, _ = await hodei("jobs", "show", "--json", job["id"])
    assert json.loads(out) == await client.get_job(job["id"])


async def test_jobs_cancel_stops_a_running_job(hodei: RunCommand, client: HodeiClient) -> None:
    job = await client.submit_job({"script": "echo started; exec sleep 30"})
    with trio.fail_after(10):
        async with aclosing(client.stream_logs(job["id"])) as events:
            async for event in events:
                if event.event == "log":
                    status, out, err = await hodei("jobs", "cancel", job["id"])
                    assert (status, err) == (0, "")
                    assert out in (f"{job['id']}: cancelling\n", f"{job['id']}: cancelled\n")
                elif event.event == "end":
                    assert event.json()["state"] == "cancelled"
    status, out, err = await hodei("jobs", "cancel", job["id"])
    assert (status, out) == (1, "")
    assert err.startswith("hodei: ") and err.count("\n") == 1


async def test_logs_prints_stdout_and_stderr_apart(hodei: RunCommand, client: HodeiClient) -> None:
    job = await client.submit_job({"command": FAILING})
    await until_end(client, job["id"])
    assert await hodei("logs", job["id"]) == (0, "out\n", "err\n")
    _, out, _ = await hodei("logs", "--json", job["id"])
    document = json.loads(out)
    assert (document["state"], document["attempt"]) == ("failed", 1)
    # two pipes: which of the lines came first is the scheduler's choice
    assert sorted((c["stream"], c["data"]) for c in document["chunks"]) == [
        ("stderr", "err\n"), ("stdout", "out\n"),
    ]  # fmt: skip


async def test_logs_follow_goes_on_until_the_job_ends(
    hodei: RunCommand, client: HodeiClient, tmp_path: Path
) -> None:
    # the job waits for a file that the test writes once the follower has seen the first line
    go = tmp_path / "go"
    job = await client.submit_job(
        {"script": f"echo one; while [ ! -e '{go}' ]; do sleep 0.01; done; echo two; exit 5"}
    )
    async with trio.open_nursery() as nursery:
        result: list[tuple[int, str, str]] = []

        async def follow() -> None:
            result.append(await hodei("logs", "-f", job["id"]))

        nursery.start_soon(follow)
        # read to the end: a streamed answer left half-read under trio is a ResourceWarning
        async for event in client.stream_logs(job["id"]):
            if event.event == "log":
                go.touch()
    assert result == [(5, "one\ntwo\n", "")]
    assert await hodei("logs", "-f", job["id"]) == (5, "one\ntwo\n", "")  # an ended job


async def test_a_job_that_succeeds_follows_to_0(hodei: RunCommand, client: HodeiClient) -> None:
    job = await client.submit_job({"script": "echo done"})
    assert await hodei("logs", "-f", job["id"]) == (0, "done\n", "")
