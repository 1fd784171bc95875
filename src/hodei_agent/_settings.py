"""The agent's settings, read in one place: command-line flags beat ``HODEI_*`` environment
variables, which beat the defaults.

| setting | flag | environment | default |
| --- | --- | --- | --- |
| server URL | ``--server`` | ``HODEI_SERVER`` | required |
| agent registration token | ``--token`` | ``HODEI_AGENT_TOKEN`` | required |
| worker name | ``--name`` | ``HODEI_AGENT_NAME`` | the host name |
| labels | ``--labels a,b`` | ``HODEI_AGENT_LABELS`` | none |
| job slots | ``--slots`` | ``HODEI_AGENT_SLOTS`` | 1 |
| heartbeat interval | ``--heartbeat`` | | what the server says |
| long-poll wait | ``--poll-wait`` | | what the server says |
"""

from __future__ import annotations

import math
import re
import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

import attrs

__all__ = ["AgentSettings", "SettingsError", "load_agent_settings"]

_MIB = 1024 * 1024
# the server's rules: a worker name goes into bus topics, labels are short texts
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}\Z")
_MAX_LABEL = 200
_MAX_SLOTS = 100_000
_MAX_POLL_WAIT_S = 60.0  # the server waits no longer, whatever it is asked


class SettingsError(Exception):
    """The settings are unusable; the message is one line that says why."""


@attrs.frozen(kw_only=True)
class AgentSettings:
    """Everything ``run_agent`` needs; build it with ``load_agent_settings`` or directly.

    Attributes:
        server: the server's base URL.
        token: the agent registration token.
        name: the worker's name; an agent registering an existing name takes that worker over.
        labels: what the worker offers; a job runs only on a worker with all its labels.
        slots: how many jobs run at once.
        heartbeat_s: how often to heartbeat, or None for what the server says.
        poll_wait_s: how long each long-poll waits, or None for what the server says.
        backoff_base_s: the first retry after a failed call waits up to this long.
        backoff_cap_s: no retry waits longer.
        outbox_bytes: how much output to keep while the server is unavailable.
        grace_s: how long a cancelled job has to exit after SIGTERM, before SIGKILL.
    """

    server: str
    token: str = attrs.field(repr=False)
    name: str
    labels: frozenset[str] = frozenset()
    slots: int = 1
    heartbeat_s: float | None = None
    poll_wait_s: float | None = None
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 10.0
    outbox_bytes: int = 64 * _MIB
    grace_s: float = 5.0


def default_name() -> str:
    """The host name, made into a worker name (``build.example.com`` → ``build-example-com``)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()).strip("-")[:64]
    return name or "agent"


def _server(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"server: expected a URL like http://host:8080, got {url!r}")
    if parts.query or parts.fragment:
        raise SettingsError(f"server: the URL must not have a query or fragment: {url!r}")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise SettingsError(f"server: bad port in {url!r}") from None
    return url.rstrip("/")


def _labels(text: str) -> frozenset[str]:
    labels = frozenset(label.strip() for label in text.split(",") if label.strip())
    for label in labels:
        if len(label) > _MAX_LABEL:
            raise SettingsError(f"labels: a label has at most {_MAX_LABEL} characters")
    return labels


def _number(where: str, value: object, kind: type[int] | type[float]) -> float:
    if isinstance(value, str):
        try:
            value = kind(value)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise SettingsError(f"{where}: expected {what}, got {value!r}") from None
    assert isinstance(value, int | float)
    if not math.isfinite(value) or value <= 0:
        raise SettingsError(f"{where}: must be positive, got {value!r}")
    return value


def load_agent_settings(
    flags: Mapping[str, object | None], environ: Mapping[str, str]
) -> AgentSettings:
    """The settings from command-line flags and the environment.

    Args:
        flags: ``server``, ``token``, ``name``, ``labels``, ``slots``, ``heartbeat``,
            ``poll_wait`` as given on the command line (None or absent: not given).
        environ: the environment (``HODEI_SERVER``, ``HODEI_AGENT_TOKEN``,
            ``HODEI_AGENT_NAME``, ``HODEI_AGENT_LABELS``, ``HODEI_AGENT_SLOTS``).

    Raises:
        SettingsError: one line saying what is wrong.
    """

    def pick(flag: str, variable: str | None) -> object | None:
        value = flags.get(flag)
        if value is None and variable is not None:
            value = environ.get(variable) or None
        return value

    server = pick("server", "HODEI_SERVER")
    if not server:
        raise SettingsError("no server: give --server URL or set HODEI_SERVER")
    token = pick("token", "HODEI_AGENT_TOKEN")
    if not token:
        raise SettingsError("no agent token: give --token or set HODEI_AGENT_TOKEN")
    name = str(pick("name", "HODEI_AGENT_NAME") or default_name())
    if not _NAME.match(name):
        raise SettingsError(f"name: {name!r} must be 1-64 letters, digits, '_' or '-'")
    slots = int(_number("slots", pick("slots", "HODEI_AGENT_SLOTS") or 1, int))
    if slots > _MAX_SLOTS:
        raise SettingsError(f"slots: at most {_MAX_SLOTS}, got {slots}")
    heartbeat = pick("heartbeat", None)
    poll_wait = pick("poll_wait", None)
    poll_wait_s = None if poll_wait is None else _number("poll-wait", poll_wait, float)
    if poll_wait_s is not None and poll_wait_s > _MAX_POLL_WAIT_S:
        raise SettingsError(f"poll-wait: at most {_MAX_POLL_WAIT_S:g} seconds, got {poll_wait_s}")
    return AgentSettings(
        server=_server(str(server)),
        token=str(token),
        name=name,
        labels=_labels(str(pick("labels", "HODEI_AGENT_LABELS") or "")),
        slots=slots,
        heartbeat_s=None if heartbeat is None else _number("heartbeat", heartbeat, float),
        poll_wait_s=poll_wait_s,
    )
