"""``hodei pipelines`` and ``hodei workers`` against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from hodei_http.client import HodeiClient

from .conftest import AGENT, RunCommand, columns

PIPELINE = """\
name: demo
steps:
  - {name: build, script: 'echo building'}
  - {name: test, command: [sh, -c, 'exit 0'], depends_on: [build]}
"""

FAILING = """\
name: failing
steps:
  - {name: build, script: 'echo building'}
  - {name: broken, script: 'exit 4', depends_on: [build]}
  - {name: never, script: 'true', depends_on: [broken]}
"""

INVALID = """\
name: bad
steps:
  - {name: a, script: x, depends_on: [biuld]}
  - {name: b, script: y, retrys: 2}
  - {name: '', script: z}
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


async def test_create_list_show_delete(hodei: RunCommand, tmp_path: Path) -> None:
    status, out, err = await hodei("pipelines", "create", write(tmp_path, "p.yaml", PIPELINE))
    assert (status, err) == (0, "")
    pipeline_id = out.strip()
    as_json = json.dumps({"name": "other", "steps": [{"name": "only", "command": ["true"]}]})
    status, out, _ = await hodei("pipelines", "create", write(tmp_path, "o.json", as_json))
    other_id = out.strip()
    status, out, _ = await hodei("pipelines", "list")
    rows = columns(out)
    assert [(r["ID"], r["NAME"], r["STEPS"]) for r in rows] == [
        (pipeline_id, "demo", "2"), (other_id, "other", "1"),
    ]  # fmt: skip
    assert rows[0]["AGE"].endswith("s")
    status, out, _ = await hodei("pipelines", "show", pipeline_id)
    head, table = out.split("\n\n")
    assert head.splitlines()[:2] == [f"id:      {pipeline_id}", "name:    demo"]
    assert columns(table) == [
        {"STEP": "build", "DEPENDS ON": "-", "RUNS": "sh -c 'echo building'"},
        {"STEP": "test", "DEPENDS ON": "build", "RUNS": "sh -c 'exit 0'"},
    ]
    status, out, _ = await hodei("pipelines", "show", "--json", pipeline_id)
    assert [s["name"] for s in json.loads(out)["steps"]] == ["build", "test"]
    status, out, _ = await hodei("pipelines", "list", "--json")
    assert [p["id"] for p in json.loads(out)["items"]] == [pipeline_id, other_id]
    assert await hodei("pipelines", "delete", pipeline_id) == (0, f"deleted {pipeline_id}\n", "")
    assert await hodei("pipelines", "show", pipeline_id) == (
        1, "", f"hodei: pipeline '{pipeline_id}' not found\n",
    )  # fmt: skip


async def test_create_from_stdin(hodei: RunCommand, client: HodeiClient) -> None:
    status, out, _ = await hodei("pipelines", "create", "-", stdin=PIPELINE)
    assert status == 0
    assert (await client.get_pipeline(out.strip()))["name"] == "demo"


async def test_an_invalid_pipeline_prints_every_problem_and_exits_2(
    hodei: RunCommand, tmp_path: Path
) -> None:
    status, out, err = await hodei("pipelines", "create", write(tmp_path, "bad.yaml", INVALID))
    assert (status, out) == (2, "")
    first, *problems = err.splitlines()
    assert first == "hodei: pipeline is invalid (3 problems)"
    paths = sorted(p.split(": ")[0].strip() for p in problems)
    assert paths == ["steps[0].depends_on[0]", "steps[1].retrys", "steps[2].name"]
    assert any("did you mean 'retries'?" in p for p in problems)
    status, out, err = await hodei("pipelines", "create", write(tmp_path, "x.yaml", "a: [1"))
    assert (status, out) == (2, "")
    assert err.startswith("hodei: ")


async def test_a_missing_file_is_one_line_and_exit_2(hodei: RunCommand, tmp_path: Path) -> None:
    status, out, err = await hodei("pipelines", "create", str(tmp_path / "nope.yaml"))
    assert (status, out) == (2, "")
    assert err == f"hodei: cannot read {tmp_path / 'nope.yaml'}: No such file or directory\n"


async def test_run_wait_shows_the_steps_and_exits_0_iff_it_succeeded(
    hodei: RunCommand, client: HodeiClient
) -> None:
    good = await client.create_pipeline(PIPELINE)
    status, out, err = await hodei("pipelines", "run", "--wait", good["id"])
    assert (status, err) == (0, "")
    run_id, *steps, last = out.splitlines()
    assert run_id.startswith("run-")
    # each line: elapsed time, step, state; every step is seen ending
    changes = [line.split()[1:] for line in steps]
    assert ["build", "succeeded"] in changes and ["test", "succeeded"] in changes
    assert last == f"run {run_id} of demo: succeeded"
    bad = await client.create_pipeline(FAILING)
    status, out, _ = await hodei("pipelines", "run", bad["id"], "--wait")
    assert status == 1
    changes = [line.split()[1:] for line in out.splitlines()[1:-1]]
    assert ["broken", "failed"] in changes and ["never", "skipped"] in changes
    assert out.splitlines()[-1].endswith(": failed")
    status, out, _ = await hodei("pipelines", "run", bad["id"], "--wait", "--json")
    assert (status, json.loads(out)["state"]) == (1, "failed")


async def test_run_without_wait_prints_the_run(hodei: RunCommand, client: HodeiClient) -> None:
    pipeline = await client.create_pipeline(PIPELINE)
    status, out, _ = await hodei("pipelines", "run", pipeline["id"])
    assert status == 0
    assert (await client.get_run(out.strip()))["pipeline_id"] == pipeline["id"]
    status, out, _ = await hodei("pipelines", "run", pipeline["id"], "--json")
    assert (status, json.loads(out)["pipeline_id"]) == (0, pipeline["id"])


async def test_workers_table_and_drain_by_name_or_id(hodei: RunCommand, server: str) -> None:
    async with httpx.AsyncClient(base_url=server) as agent:
        registered = await agent.post(
            "/api/v1/workers",
            json={"name": "idle", "labels": ["linux", "gpu"], "capacity": {"slots": 2}},
            headers={"Authorization": f"Bearer {AGENT}"},
        )
    idle_id = registered.json()["worker"]["id"]
    status, out, err = await hodei("workers")
    assert (status, err) == (0, "")
    assert out.splitlines()[0].split() == ["ID", "NAME", "STATE", "LABELS", "SLOTS", "LAST", "SEEN"]
    rows = {row["NAME"]: row for row in columns(out)}
    assert rows["idle"] == {
        "ID": idle_id, "NAME": "idle", "STATE": "online", "LABELS": "gpu,linux", "SLOTS": "2",
        "LAST SEEN": rows["idle"]["LAST SEEN"],
    }  # fmt: skip
    assert (rows["embedded-1"]["STATE"], rows["embedded-1"]["SLOTS"]) == ("online", "4")
    assert await hodei("workers", "drain", "idle") == (0, f"{idle_id} (idle): draining\n", "")
    status, out, _ = await hodei("workers", "drain", idle_id, "--json")
    assert (status, json.loads(out)["state"]) == (0, "draining")
    status, out, _ = await hodei("workers", "list", "--json")
    assert {w["name"]: w["state"] for w in json.loads(out)["items"]} == {
        "embedded-1": "online", "idle": "draining",
    }  # fmt: skip
    assert await hodei("workers", "drain", "nobody") == (
        1, "", "hodei: worker 'nobody' not found\n",
    )  # fmt: skip
