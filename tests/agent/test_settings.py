"""``hodei agent``'s settings and command line: flags beat the environment, bad input is one
line and exit status 2, and the command stays light to import."""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

import pytest
import trio

import hodei_agent
from hodei_agent._cli import command, run_agent_command
from hodei_agent._settings import AgentSettings, SettingsError, default_name, load_agent_settings

from ._cluster import Cluster

BASE = {"server": "http://hodei:8080", "token": "t0ken"}


def parse(*argv: str) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    command(parser)
    return vars(parser.parse_args(argv))


def test_flags_beat_the_environment_which_beats_the_defaults() -> None:
    environ = {
        "HODEI_SERVER": "http://env:1",
        "HODEI_AGENT_TOKEN": "env-token",
        "HODEI_AGENT_NAME": "env-name",
        "HODEI_AGENT_LABELS": "x",
    }
    flags = parse("--server", "https://flag:2/", "--labels", " linux, gpu ,,", "--slots", "4")
    settings = load_agent_settings(flags, environ)
    assert settings == AgentSettings(
        server="https://flag:2",
        token="env-token",
        name="env-name",
        labels=frozenset({"linux", "gpu"}),
        slots=4,
    )
    assert "env-token" not in repr(settings)
    defaults = load_agent_settings(parse(), {"HODEI_SERVER": "http://h", "HODEI_AGENT_TOKEN": "t"})
    assert (defaults.name, defaults.slots, defaults.labels) == (default_name(), 1, frozenset())
    assert (defaults.heartbeat_s, defaults.poll_wait_s) == (None, None)  # the server's
    paced = load_agent_settings({**BASE, "heartbeat": "0.5", "poll_wait": "10"}, {})
    assert (paced.heartbeat_s, paced.poll_wait_s) == (0.5, 10.0)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"token": "t"}, "no server: give --server URL or set HODEI_SERVER"),
        ({"server": "http://h"}, "no agent token"),
        ({**BASE, "server": "hodei:8080"}, "server: expected a URL like http://host:8080"),
        ({**BASE, "server": "http://h:99999"}, "server: bad port"),
        ({**BASE, "server": "http://h/?x=1"}, "server: the URL must not have a query"),
        ({**BASE, "name": "no spaces"}, "name: 'no spaces' must be 1-64 letters"),
        ({**BASE, "name": "-dash"}, "name: '-dash' must be"),
        ({**BASE, "slots": "0"}, "slots: must be positive, got 0"),
        ({**BASE, "slots": "two"}, "slots: expected an integer, got 'two'"),
        ({**BASE, "slots": "1.5"}, "slots: expected an integer"),
        ({**BASE, "slots": "100001"}, "slots: at most 100000"),
        ({**BASE, "heartbeat": "-1"}, "heartbeat: must be positive"),
        ({**BASE, "heartbeat": "nan"}, "heartbeat: must be positive, got nan"),
        ({**BASE, "poll_wait": "61"}, "poll-wait: at most 60 seconds"),
        ({**BASE, "labels": "a," + "x" * 201}, "labels: a label has at most 200 characters"),
    ],
)
def test_bad_settings_are_one_line(flags: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_agent_settings(flags, {})
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_bad_input_is_one_line_and_exit_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_agent_command({"server": "ftp://h", "token": "t"}, {}) == 2
    err = capsys.readouterr().err
    assert err == "hodei agent: server: expected a URL like http://host:8080, got 'ftp://h'\n"


async def test_a_refused_token_is_one_line_and_exit_status_2(cluster: Cluster) -> None:
    await cluster.server()
    argv = ["--server", cluster.url, "--token", "not-the-agent-token", "--name", "x"]
    with trio.fail_after(20):
        result = await trio.run_process(
            [sys.executable, "-m", "hodei_agent", *argv],
            capture_stdout=True,
            capture_stderr=True,
            env=cluster.env,
            check=False,
        )
    err = result.stderr.decode()
    assert result.returncode == 2
    assert err.startswith("hodei agent: the server refused the agent token: 401"), err
    assert err.count("\n") == 1, err


def test_the_command_is_light_and_the_api_is_sorted() -> None:
    code = (
        "import sys, hodei_agent, hodei_agent._cli\n"
        "print(sorted({'httpx', 'trio', 'cattrs'} & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert hodei_agent.__all__ == sorted(hodei_agent.__all__)
    for name in hodei_agent.__all__:
        assert getattr(hodei_agent, name).__module__.startswith("hodei_agent.")
    assert "run_agent" in dir(hodei_agent)
    with pytest.raises(AttributeError):
        hodei_agent.nothing  # noqa: B018
