"""The server's settings, read in one place: CLI flags > ``HODEI_*`` environment > TOML > defaults.

The configuration file has the shape of issue 4::

    [server]
    host = "0.0.0.0"
    port = 8080
    store = "sqlite:///var/lib/hodei/hodei.db"
    bus = "memory://"
    agent_token = "…"            # what agents register with (or agent_token_sha256 = "<hex>")
    secret = "…"                 # optional: the key worker tokens are derived from

    [tenants.acme]
    token = "…"                  # API token (or token_sha256 = "<hex>")
    max_running = 10
    max_queued = 100
    submit_rate = 600            # submissions per minute

Tokens are kept only as SHA-256 digests. When no agent token or no tenant is configured, one
is generated for this start and printed; generated tokens are only allowed on a loopback
address, so that a server reachable from elsewhere never runs with tokens nobody chose.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import re
import secrets
import tomllib
from collections.abc import Mapping
from typing import Any

import attrs

from hodei_backends import redact_url
from hodei_core import TenantQuota

__all__ = [
    "DEFAULT_TENANT",
    "ServerSettings",
    "SettingsError",
    "TenantSettings",
    "hash_token",
    "is_loopback",
    "load_settings",
]

DEFAULT_TENANT = "default"
_MIB = 1024 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_TENANT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}\Z")  # the core's rule for names in topics

_SERVER_KEYS = {
    "host": str,
    "port": int,
    "store": str,
    "bus": str,
    "agent_token": str,
    "agent_token_sha256": str,
    "secret": str,
    "max_body_bytes": int,
    "lost_after_s": float,
    "heartbeat_interval_s": float,
    "poll_wait_s": float,
}
_TENANT_KEYS = {
    "token": str,
    "token_sha256": str,
    "max_running": int,
    "max_queued": int,
    "submit_rate": int,
}
# environment variable -> [server] key; HODEI_API_TOKEN is the token of the tenant "default"
_ENVIRONMENT = {
    "HODEI_HOST": "host",
    "HODEI_PORT": "port",
    "HODEI_STORE": "store",
    "HODEI_BUS": "bus",
    "HODEI_AGENT_TOKEN": "agent_token",
    "HODEI_SECRET": "secret",
    "HODEI_MAX_BODY_BYTES": "max_body_bytes",
}


class SettingsError(Exception):
    """The settings are unusable; the message is one line that says why and where."""


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a token is kept."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine (``localhost``, ``127.x``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name could resolve to anything: assume the worst


@attrs.frozen(kw_only=True)
class TenantSettings:
    """One tenant: the digest of its API token and its quota."""

    name: str
    token_sha256: str = attrs.field(repr=False)
    quota: TenantQuota = attrs.field(factory=TenantQuota)


def _url_repr(url: str) -> str:
    # settings get logged and shown in tracebacks: a store or bus URL may hold a password
    return repr(redact_url(url))


@attrs.frozen(kw_only=True)
class ServerSettings:
    """Everything ``serve`` and ``create_app`` need; build it with ``load_settings``, or
    directly in tests.

    Attributes:
        host: address to listen on.
        port: TCP port (0: any free port).
        store: store URL for ``hodei_backends.open_store``.
        bus: event bus URL for ``hodei_backends.open_bus``.
        agent_token_sha256: digest of the token agents register with.
        tenants: the tenants and their API tokens' digests.
        secret: key of the HMAC that derives each worker's token from its id.
        max_body_bytes: largest request body accepted (413 beyond).
        lost_after_s: silence after which a worker is lost.
        heartbeat_interval_s: how often agents are asked to heartbeat, at least (a large
            fleet is asked to beat less often: see ``Api.heartbeat_pace``).
        poll_wait_s: the long-poll wait agents are told to use; also the cap for ``?wait=``
            is ``max(60, poll_wait_s)``.
        generated_tokens: tokens made up for this start, ``(what, token)``, to print once.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    store: str = attrs.field(default="sqlite:///./hodei.db", repr=_url_repr)
    bus: str = attrs.field(default="memory://", repr=_url_repr)
    agent_token_sha256: str = attrs.field(default="", repr=False)
    tenants: tuple[TenantSettings, ...] = ()
    secret: bytes = attrs.field(factory=lambda: secrets.token_bytes(32), repr=False)
    max_body_bytes: int = _MIB
    lost_after_s: float = 30.0
    heartbeat_interval_s: float = 5.0
    poll_wait_s: float = 25.0
    generated_tokens: tuple[tuple[str, str], ...] = attrs.field(default=(), repr=False)

    @property
    def quotas(self) -> dict[str, TenantQuota]:
        """Each tenant's quota, as ``Hodei(quotas=…)`` takes them."""
        return {tenant.name: tenant.quota for tenant in self.tenants}

    @property
    def url(self) -> str:
        """The base URL the server listens on (as configured: port 0 stays 0)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def _typed(value: object, kind: type, where: str) -> Any:
    """``value`` checked to be of ``kind`` (an int is a fine float; a bool is not an int)."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SettingsError(f"{where}: expected {_KIND_NAMES[kind]}, got {value!r}")
    if kind is float and not math.isfinite(value):  # type: ignore[arg-type]
        raise SettingsError(f"{where}: expected a finite number, got {value!r}")
    return value


_KIND_NAMES: dict[type, str] = {str: "a string", int: "an integer", float: "a number"}


def _from_env(name: str, text: str, kind: type) -> Any:
    if kind is str:
        return text
    try:
        return kind(text)
    except ValueError:
        raise SettingsError(f"{name}: expected {_KIND_NAMES[kind]}, got {text!r}") from None


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as exc:
        raise SettingsError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config {path}: not valid TOML: {exc}") from None


def _table(doc: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        raise SettingsError(f"{where}: [{key}] must be a table")
    return value


def _check_keys(table: Mapping[str, Any], allowed: Mapping[str, type], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise SettingsError(
                f"{where}: unknown key {key!r}; allowed: {', '.join(sorted(allowed))}"
            )


def _digest(plain: object, digest: object, where: str) -> str | None:
    """The token digest from ``token`` or ``token_sha256`` (at most one of them)."""
    if plain is not None and digest is not None:
        raise SettingsError(f"{where}: set the token or its sha256, not both")
    if plain is not None:
        if len(plain) < 16:  # type: ignore[arg-type]
            raise SettingsError(f"{where}: a token must have at least 16 characters")
        return hash_token(plain)  # type: ignore[arg-type]
    if digest is not None:
        text = str(digest).lower()
        if not _HEX64.match(text):
            raise SettingsError(f"{where}: a sha256 must be 64 hexadecimal digits")
        return text
    return None


def _quota_value(table: Mapping[str, Any], key: str, where: str) -> int | None:
    value = table.get(key)
    if value is None:
        return None
    value = _typed(value, int, f"{where}.{key}")
    if value < 0:
        raise SettingsError(f"{where}.{key}: must be 0 or more, got {value}")
    return int(value)


def _tenants(doc: Mapping[str, Any], where: str) -> list[TenantSettings]:
    tenants = []
    for name, table in _table(doc, "tenants", where).items():
        at = f"{where}: [tenants.{name}]"
        if not _TENANT.match(name):
            raise SettingsError(f"{at}: a tenant name is 1-64 letters, digits, '_' or '-'")
        if not isinstance(table, Mapping):
            raise SettingsError(f"{at} must be a table")
        _check_keys(table, _TENANT_KEYS, at)
        for key in ("token", "token_sha256"):
            if key in table:
                _typed(table[key], str, f"{at}.{key}")
        digest = _digest(table.get("token"), table.get("token_sha256"), at)
        if digest is None:
            raise SettingsError(f"{at}: needs a token (or token_sha256)")
        quota = TenantQuota(
            max_running=_quota_value(table, "max_running", at),
            max_queued=_quota_value(table, "max_queued", at),
            submit_rate=_quota_value(table, "submit_rate", at),
        )
        tenants.append(TenantSettings(name=name, token_sha256=digest, quota=quota))
    return tenants


def load_settings(flags: Mapping[str, object | None], environ: Mapping[str, str]) -> ServerSettings:
    """Build the settings from CLI flags, the environment and the config file.

    Args:
        flags: ``host``, ``port``, ``store``, ``bus``, ``config`` as given on the command line
            (None or absent: not given).
        environ: the environment (``HODEI_*`` variables; ``HODEI_CONFIG`` names the file,
            ``HODEI_API_TOKEN`` is the API token of the tenant ``default``).

    Raises:
        SettingsError: with one line saying what is wrong, including a non-loopback address
            without configured tokens.
    """
    config_path = flags.get("config") or environ.get("HODEI_CONFIG")
    doc = _read_file(str(config_path)) if config_path else {}
    where = f"config {config_path}"
    _check_keys(doc, {"server": dict, "tenants": dict}, where)
    server = dict(_table(doc, "server", where))
    _check_keys(server, _SERVER_KEYS, f"{where}: [server]")
    values: dict[str, Any] = {
        key: _typed(value, _SERVER_KEYS[key], f"{where}: [server].{key}")
        for key, value in server.items()
    }
    for name, key in _ENVIRONMENT.items():
        if environ.get(name):
            values[key] = _from_env(name, environ[name], _SERVER_KEYS[key])
            if key == "agent_token":
                values.pop("agent_token_sha256", None)
    for key in ("host", "port", "store", "bus"):
        if flags.get(key) is not None:
            values[key] = flags[key]

    generated: list[tuple[str, str]] = []
    agent_digest = _digest(
        values.pop("agent_token", None), values.pop("agent_token_sha256", None), "agent token"
    )
    if agent_digest is None:
        token = secrets.token_urlsafe(32)
        generated.append(("agent registration token", token))
        agent_digest = hash_token(token)

    tenants = _tenants(doc, where)
    api_token = environ.get("HODEI_API_TOKEN")
    if api_token:
        tenants = [t for t in tenants if t.name != DEFAULT_TENANT]
        digest = _digest(api_token, None, "HODEI_API_TOKEN")
        assert digest is not None
        tenants.append(TenantSettings(name=DEFAULT_TENANT, token_sha256=digest))
    if not tenants:
        token = secrets.token_urlsafe(32)
        generated.append((f"API token of tenant {DEFAULT_TENANT!r}", token))
        tenants.append(TenantSettings(name=DEFAULT_TENANT, token_sha256=hash_token(token)))
    digests = [agent_digest, *(t.token_sha256 for t in tenants)]
    if len(set(digests)) != len(digests):
        raise SettingsError("every tenant and the agents need tokens of their own")

    secret_text = values.pop("secret", None)
    if secret_text is not None:
        secret = hashlib.sha256(b"hodei worker tokens\0" + secret_text.encode()).digest()
    elif not generated:
        # Configured tokens: derive the key from the agent token's digest, so that worker
        # tokens stay valid across restarts without one more thing to configure.
        secret = hmac.digest(bytes.fromhex(agent_digest), b"hodei worker tokens", "sha256")
    else:
        secret = secrets.token_bytes(32)

    settings = ServerSettings(
        agent_token_sha256=agent_digest,
        tenants=tuple(tenants),
        secret=secret,
        generated_tokens=tuple(generated),
        **values,
    )
    _check(settings)
    return settings


def _check(settings: ServerSettings) -> None:
    if not 0 <= settings.port <= 65535:
        raise SettingsError(f"port must be from 0 to 65535, got {settings.port}")
    if not settings.host:
        raise SettingsError("host must not be empty")
    if settings.max_body_bytes < 1024:
        raise SettingsError(f"max_body_bytes must be at least 1024, got {settings.max_body_bytes}")
    for key in ("lost_after_s", "heartbeat_interval_s", "poll_wait_s"):
        if getattr(settings, key) <= 0:
            raise SettingsError(f"{key} must be positive, got {getattr(settings, key)}")
    if settings.generated_tokens and not is_loopback(settings.host):
        raise SettingsError(
            f"refusing to listen on {settings.host} without configured tokens: set the agent "
            "token and the tenants' tokens in --config (or HODEI_AGENT_TOKEN and HODEI_API_TOKEN)"
        )
