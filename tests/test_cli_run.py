"""``hodei run FILE`` as a user runs it: a real process, real shell steps."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import trio

HODEI = [sys.executable, "-m", "hodei_backends._cli"]
EXAMPLES = Path(__file__).parent.parent / "examples"


def hodei(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HODEI, *args], capture_output=True, text=True, timeout=60, check=False)


def test_hello_example_succeeds_with_prefixed_output_and_summary() -> None:
    result = hodei("run", str(EXAMPLES / "hello.yaml"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("build") and "| building hello" in line for line in lines)
    assert "hunter2" not in result.stdout  # the secret is masked
    assert any("linting with token ***" in line for line in lines)
    assert lines[-1].startswith("pipeline hello: succeeded in ")
    table = lines[lines.index(next(ln for ln in lines if ln.startswith("STEP"))) + 1 : -1]
    assert [row.split()[:2] for row in table] == [
        ["build", "succeeded"],
        ["test-unit", "succeeded"],
        ["test-lint", "succeeded"],
        ["package", "succeeded"],
    ]
    # dependencies ran first: the build's output comes before everything else
    first_of = {
        name: next(i for i, ln in enumerate(lines) if ln.startswith(name))
        for name in ("build", "test-unit", "package")
    }
    assert first_of["build"] < first_of["test-unit"] < first_of["package"]


def test_a_failing_step_fails_the_run_and_skips_dependents(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "name: failing\n"
        "steps:\n"
        "  - {name: ok, script: 'echo fine'}\n"
        "  - {name: broken, script: 'echo oops >&2; exit 4', depends_on: [ok]}\n"
        "  - {name: never, script: 'echo no', depends_on: [broken]}\n"
    )
    result = hodei("run", str(pipeline))
    assert result.returncode == 1
    assert "broken ! oops" in result.stdout
    rows = {ln.split()[0]: ln.split()[1:] for ln in result.stdout.splitlines() if ln[:1].isalpha()}
    assert rows["broken"] == ["failed", rows["broken"][1], "4"]
    assert rows["never"] == ["skipped"]
    assert result.stdout.splitlines()[-1].startswith("pipeline failing: failed")


def test_invalid_file_gives_every_problem_on_one_screen(tmp_path: Path) -> None:
    pipeline = tmp_path / "bad.json"
    pipeline.write_text(
        '{"name": "bad", "steps": [{"name": "a", "script": "x", "depends_on": ["b"]},'
        ' {"name": "b", "script": "y", "depends_on": ["a"], "timeout_s": -1},'
        ' {"name": "", "script": "z"}]}'
    )
    result = hodei("run", str(pipeline))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cycle: a -> b -> a" in result.stderr
    assert "steps[1].timeout_s" in result.stderr
    assert "steps[2].name" in result.stderr
    assert len(result.stderr.splitlines()) < 24


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    result = hodei("run", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr and "Traceback" not in result.stderr


async def test_ctrl_c_cancels_the_run_and_kills_its_processes(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    pipeline = tmp_path / "slow.yaml"
    pipeline.write_text(
        "name: slow\n"
        "steps:\n"
        f"  - name: sleeper\n    script: 'sleep 300 & echo $! > {pidfile}; echo started; wait'\n"
        "  - {name: after, script: 'echo no', depends_on: [sleeper]}\n"
    )
    proc = await trio.lowlevel.open_process(
        [*HODEI, "run", str(pipeline)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    seen = b""
    with trio.fail_after(30):
        while b"started" not in seen:
            data = await proc.stdout.receive_some()
            assert data, "hodei run ended before the step started"
            seen += data
        proc.send_signal(signal.SIGINT)
        rest = b""
        while data := await proc.stdout.receive_some():
            rest += data
        await proc.wait()
    assert proc.returncode == 130
    out = rest.decode()
    assert "sleeper" in out and "cancelled" in out
    assert not alive(int(pidfile.read_text()))


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not yet reaped by its new parent) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_db_upgrade_then_run_on_a_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hodei.db'}"
    upgraded = hodei("db", "upgrade", url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "up to date" in upgraded.stdout
    result = hodei("run", "--store", url, str(EXAMPLES / "hello.yaml"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "hodei.db").stat().st_size > 0
