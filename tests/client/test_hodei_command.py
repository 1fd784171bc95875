"""The commands as ``hodei`` runs them, in real processes: listed in ``hodei --help`` through the
``hodei.commands`` entry points (declared here by a stand-in distribution on ``PYTHONPATH``,
the same declaration pyproject.toml makes), exit statuses, Ctrl-C; and light to import."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from hodei_http.client import HodeiClient

from .conftest import ACME, COMMANDS

ENTRY_POINTS = "".join(
    f"{name} = hodei_http.client._commands.{name}\n" for name in sorted(COMMANDS)
)


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    """An environment whose Python sees the commands' entry points, and no HODEI_*."""
    dist = tmp_path / "hodei_client_commands-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: hodei-client-commands\nVersion: 0\n"
    )
    (dist / "entry_points.txt").write_text("[hodei.commands]\n" + ENTRY_POINTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HODEI_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    return env


def hodei(*args: str) -> list[str]:
    return [sys.executable, "-m", "hodei_backends._cli", *args]


def test_hodei_help_lists_the_commands(environ: dict[str, str]) -> None:
    result = subprocess.run(
        hodei("--help"), capture_output=True, text=True, env=environ, check=False, timeout=30
    )
    assert result.returncode == 0, result.stderr
    for name, module in COMMANDS.items():
        # argparse puts the help of a long name on the next line
        listed = rf"^ +{name}\s+{re.escape(module.HELP)}$"
        assert re.search(listed, result.stdout, re.MULTILINE), (name, result.stdout)


def test_the_command_modules_do_not_load_the_client() -> None:
    # `hodei` imports every command's module to build its parser, for any command
    modules = ", ".join(f"hodei_http.client._commands.{name}" for name in COMMANDS)
    code = (
        f"import sys, {modules}\n"
        "heavy = {'httpx', 'httpcore', 'anyio', 'trio', 'yaml', 'attrs', 'hodei_core'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_command_without_its_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="hodei jobs")
    COMMANDS["jobs"].command(parser)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args([])
    assert exited.value.code == 2
    assert "the following arguments are required: ACTION" in capsys.readouterr().err


async def test_submit_wait_exits_with_the_jobs_code(server: str, environ: dict[str, str]) -> None:
    with trio.fail_after(20):
        result = await trio.run_process(
            hodei("submit", "--server", server, "--token", ACME, "--wait", "--",
                  "sh", "-c", "echo out; echo err >&2; exit 7"),
            capture_stdout=True, capture_stderr=True, env=environ, check=False,
        )  # fmt: skip
    job_id, log = result.stdout.decode().split("\n", 1)
    assert (result.returncode, log) == (7, "out\n")
    assert result.stderr.decode() == f"err\nhodei: job {job_id} failed with exit code 7\n"


async def test_ctrl_c_while_following_exits_130_quietly(
    server: str, client: HodeiClient, environ: dict[str, str]
) -> None:
    job = await client.submit_job({"script": "echo started; exec sleep 30"})
    process = await trio.lowlevel.open_process(
        hodei("logs", "-f", job["id"], "--server", server, "--token", ACME),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    try:
        seen = b""
        with trio.fail_after(20):
            while b"started\n" not in seen:
                data = await process.stdout.receive_some()
                assert data, "hodei logs -f ended early"
                seen += data
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 130
            assert await process.stderr.receive_some() == b""
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await client.cancel_job(job["id"])
