"""Events as NATS messages: topics and patterns as subjects, events as JSON payloads.

Payloads are one tagged union, ``{"type": "JobAssigned", "data": {...}}``, written by a private
cattrs converter (serialization stays at the edge; the domain classes know nothing of it).

**Secrets never travel**: a ``JobSpec`` is written without its ``secrets`` (and any ``secrets``
in an incoming message is ignored), so a ``JobFinished`` received from NATS carries a job whose
``spec.secrets`` is empty. Events are hints to re-read the store, which keeps the secrets.

Subjects are the topics, behind a prefix (``hodei.`` by default) so that several installations
can share one server. Topics are already NATS-shaped, but their tokens come from ids and tenant
names, which NATS would refuse or misread when empty or holding whitespace, ``*`` or ``>``.
Such characters (and ``%``) are escaped as ``%XXXX`` (four hex digits), token by token, in
topics and patterns alike: the mapping is one-to-one and keeps which topics a pattern matches.
"""

from __future__ import annotations

import json
import re
import typing

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter

from hodei_core import JobSpec
from hodei_core.events import Event

__all__ = [
    "DEFAULT_PREFIX",
    "EVENT_CLASSES",
    "decode_event",
    "encode_event",
    "pattern_subject",
    "topic_subject",
    "validate_prefix",
]

DEFAULT_PREFIX = "hodei."

#: Every event class by the name that tags it on the wire.
EVENT_CLASSES: dict[str, type[Event]] = {cls.__name__: cls for cls in typing.get_args(Event)}

# detailed_validation off: messages come from our own encoder; a malformed one is dropped with
# a log line, so the cost of building exception groups on every decode buys nothing.
_converter = make_converter(detailed_validation=False)
_converter.register_unstructure_hook(
    JobSpec, make_dict_unstructure_fn(JobSpec, _converter, secrets=override(omit=True))
)
_converter.register_structure_hook(
    JobSpec, make_dict_structure_fn(JobSpec, _converter, secrets=override(omit=True))
)


def encode_event(event: Event) -> bytes:
    """``event`` as a JSON message body (a ``JobSpec``'s secrets left out)."""
    body = {"type": type(event).__name__, "data": _converter.unstructure(event)}
    # ASCII output: text may hold lone surrogates (json.loads makes them from "\ud800"), which
    # have no UTF-8 encoding; escaped, they survive the round trip.
    return json.dumps(body, separators=(",", ":")).encode("ascii")


def decode_event(payload: bytes) -> Event:
    """The event in a message body written by ``encode_event``.

    Raises:
        ValueError: the body is not such a message.
    """
    try:
        body = json.loads(payload)
        cls = EVENT_CLASSES[body["type"]]
        event: Event = _converter.structure(body["data"], cls)
    except (ValueError, TypeError, KeyError, cattrs.BaseValidationError) as e:
        raise ValueError(f"not a Hodei event message: {payload[:200]!r}") from e
    return event


# ASCII whitespace (NATS separates protocol arguments with it), the wildcards, and the escape
# character itself; lone surrogates too, which cannot be encoded to UTF-8 for the wire.
_SPECIAL = re.compile(r"[%*>\s\ud800-\udfff]", re.ASCII)


def _escape_char(match: re.Match[str]) -> str:
    return f"%{ord(match.group()):04X}"


def _escape_token(token: str) -> str:
    # "%" alone cannot come out of escaping a non-empty token, so it stands for the empty one.
    return _SPECIAL.sub(_escape_char, token) if token else "%"


def _needs_escaping(text: str) -> bool:
    return (
        not text
        or _SPECIAL.search(text) is not None
        or ".." in text
        or text[0] == "."
        or text[-1] == "."
    )


def topic_subject(prefix: str, topic: str) -> str:
    """The subject an event with ``topic`` is published on."""
    if not _needs_escaping(topic):  # the usual case, kept cheap: this runs on every publish
        return prefix + topic
    return prefix + ".".join(_escape_token(t) for t in topic.split("."))


def pattern_subject(prefix: str, pattern: str) -> str:
    """The subject to subscribe to for ``pattern``.

    Whole-token ``*`` and ``>`` stay wildcards. As in ``hodei_core.events.topic_matches``, a
    ``>`` token matches the rest of the topic, so any tokens after it are dropped (NATS only
    allows ``>`` last).
    """
    tokens = pattern.split(".")
    if ">" in tokens:
        tokens = tokens[: tokens.index(">") + 1]
    return prefix + ".".join(t if t in ("*", ">") else _escape_token(t) for t in tokens)


def validate_prefix(prefix: str) -> str:
    """``prefix`` if it is usable as a subject prefix: empty, or literal tokens each followed by
    a dot (``hodei.``, ``hodei.prod.``).

    Raises:
        ValueError: it is not.
    """
    if prefix and (not prefix.endswith(".") or _needs_escaping(prefix[:-1])):
        raise ValueError(
            f"subject prefix {prefix!r} must be empty or dot-separated tokens ending with '.', "
            "without whitespace, '*', '>' or '%'"
        )
    return prefix
