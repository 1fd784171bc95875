"""Settings from flags, environment and a TOML file, and ``hodei server``'s command line."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from hodei_core import TenantQuota
from hodei_http import ServerSettings, SettingsError, load_settings
from hodei_http._cli import HELP, command
from hodei_http._serve import _announce
from hodei_http._settings import hash_token, is_loopback

CONFIG = """\
[server]
store = "memory://"
bus = "memory://"
port = 9000
agent_token = "agent-token-from-the-file"

[tenants.acme]
token = "acme-token-from-the-file"
max_running = 10
max_queued = 100
submit_rate = 600

[tenants.globex]
token_sha256 = "{digest}"
"""


def _config(tmp_path: Path, text: str | None = None) -> str:
    path = tmp_path / "hodei.toml"
    path.write_text(text if text is not None else CONFIG.format(digest="ab" * 32))
    return str(path)


def test_defaults_generate_tokens_on_loopback() -> None:
    settings = load_settings({}, {})
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert (settings.store, settings.bus) == ("sqlite:///./hodei.db", "memory://")
    assert settings.max_body_bytes == 1024 * 1024
    generated = dict(settings.generated_tokens)
    assert set(generated) == {"agent registration token", "API token of tenant 'default'"}
    assert settings.agent_token_sha256 == hash_token(generated["agent registration token"])
    assert [t.name for t in settings.tenants] == ["default"]


def test_the_file_is_read(tmp_path: Path) -> None:
    settings = load_settings({"config": _config(tmp_path)}, {})
    assert (settings.port, settings.store) == (9000, "memory://")
    assert settings.generated_tokens == ()
    assert settings.agent_token_sha256 == hash_token("agent-token-from-the-file")
    acme, globex = settings.tenants
    assert acme.token_sha256 == hash_token("acme-token-from-the-file")
    assert acme.quota == TenantQuota(max_running=10, max_queued=100, submit_rate=600)
    assert (globex.token_sha256, globex.quota) == ("ab" * 32, TenantQuota())
    # with configured tokens, the worker tokens' key is stable across restarts
    assert load_settings({"config": _config(tmp_path)}, {}).secret == settings.secret


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    path = _config(tmp_path)
    environ = {"HODEI_PORT": "9100", "HODEI_STORE": "memory://env", "HODEI_HOST": "::1"}
    settings = load_settings({"config": path}, environ)
    assert (settings.port, settings.store, settings.host) == (9100, "memory://env", "::1")
    assert settings.url == "http://[::1]:9100"
    flags = {"config": path, "port": 9200, "store": "memory://flag", "host": None}
    settings = load_settings(flags, environ)
    assert (settings.port, settings.store, settings.host) == (9200, "memory://flag", "::1")
    by_env = load_settings({}, {"HODEI_CONFIG": path})
    assert by_env.port == 9000


def test_tokens_from_the_environment() -> None:
    environ = {
        "HODEI_AGENT_TOKEN": "agent-token-in-env-0",
        "HODEI_API_TOKEN": "api-token-in-env-00",
    }
    settings = load_settings({"host": "0.0.0.0"}, environ)
    assert settings.generated_tokens == ()
    assert settings.agent_token_sha256 == hash_token("agent-token-in-env-0")
    assert [(t.name, t.token_sha256) for t in settings.tenants] == [
        ("default", hash_token("api-token-in-env-00"))
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[server]\nport = 'eighty'\n", "[server].port: expected an integer"),
        ("[server]\nprot = 80\n", "unknown key 'prot'"),
        ("[servers]\n", "unknown key 'servers'"),
        ("[server\n", "not valid TOML"),
        ("[server]\nport = 70000\n", "port must be from 0 to 65535"),
        ("[server]\nagent_token = 'short'\n", "at least 16 characters"),
        ("[tenants.acme]\nmax_queued = 1\n", "needs a token"),
        ("[tenants.acme]\ntoken_sha256 = 'xyz'\n", "64 hexadecimal digits"),
        ("[tenants.acme]\ntoken = 'a-long-enough-token'\nmax_queued = -1\n", "0 or more"),
        ("[tenants.acme]\ntoken = 'a-long-enough-token'\nmax_queued = true\n", "an integer"),
        ("[tenants.'a b']\ntoken = 'a-long-enough-token'\n", "tenant name"),
        ("[tenants.acme]\ntoken = 'a-long-enough-token'\ncolour = 1\n", "unknown key 'colour'"),
        ("[server]\nlost_after_s = 0\n", "lost_after_s must be positive"),
        ("[server]\nmax_body_bytes = 10\n", "at least 1024"),
        (
            "[server]\nagent_token = 'the-same-token-twice'\n"
            "[tenants.a]\ntoken = 'the-same-token-twice'\n",
            "tokens of their own",
        ),
    ],
)
def test_invalid_configuration_is_one_clear_line(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"config": _config(tmp_path, text)}, {})
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_bad_environment(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read config"):
        load_settings({"config": str(tmp_path / "nope.toml")}, {})
    with pytest.raises(SettingsError, match="HODEI_PORT: expected an integer"):
        load_settings({}, {"HODEI_PORT": "http"})


def test_refuses_a_public_address_without_tokens(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "192.0.2.1", "example.com", "::"):
        with pytest.raises(SettingsError, match="refusing to listen on"):
            load_settings({"host": host}, {})
    # configured tokens make it fine
    assert load_settings({"host": "0.0.0.0", "config": _config(tmp_path)}, {}).host == "0.0.0.0"
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost"))


def _parse(argv: list[str]) -> tuple[argparse.Namespace, object]:
    parser = argparse.ArgumentParser(prog="hodei server")
    handler = command(parser)
    return parser.parse_args(argv), handler


def test_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert HELP
    args, handler = _parse(["--host", "0.0.0.0", "--port", "8081"])
    assert (args.host, args.port, args.store, args.bus, args.config) == (
        "0.0.0.0", 8081, None, None, None,
    )  # fmt: skip
    assert handler(args) == 2  # type: ignore[operator]
    err = capsys.readouterr().err
    assert err.startswith("hodei server: refusing to listen on 0.0.0.0") and err.count("\n") == 1

    args, handler = _parse(["--config", _config(tmp_path, "[server]\nport = 'x'\n")])
    assert handler(args) == 2  # type: ignore[operator]
    assert "expected an integer" in capsys.readouterr().err


def test_the_command_reports_an_unknown_store(capsys: pytest.CaptureFixture[str]) -> None:
    args, handler = _parse(["--store", "nosuch://x", "--port", "0"])
    assert handler(args) == 2  # type: ignore[operator]
    err = capsys.readouterr().err
    assert err.startswith("hodei server: unknown store scheme 'nosuch'") and err.count("\n") == 1


STORE = "postgresql://hodei:hunter2@db.example/hodei"
BUS = "nats://s3cr3t-t0ken@nats.example:4222"


def test_the_repr_hides_the_store_and_bus_credentials() -> None:
    settings = ServerSettings(store=STORE, bus=BUS)
    shown = repr(settings)
    assert "hunter2" not in shown and "s3cr3t-t0ken" not in shown
    assert "store='postgresql://hodei:***@db.example/hodei'" in shown
    assert "bus='nats://***@nats.example:4222'" in shown
    assert (settings.store, settings.bus) == (STORE, BUS)  # only shown redacted


def test_the_listening_line_hides_the_store_and_bus_credentials() -> None:
    out = io.StringIO()
    _announce(ServerSettings(store=STORE, bus=BUS), "http://127.0.0.1:8080", out)
    assert out.getvalue() == (
        "hodei server listening on http://127.0.0.1:8080 "
        "(store postgresql://hodei:***@db.example/hodei, bus nats://***@nats.example:4222)\n"
    )
