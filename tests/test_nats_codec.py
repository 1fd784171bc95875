"""The NATS bus's wire format: events as JSON (secrets left out), topics as subjects."""

from __future__ import annotations

import typing

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hodei_backends.nats._codec import (
    EVENT_CLASSES,
    decode_event,
    encode_event,
    pattern_subject,
    topic_subject,
)
from hodei_core import FailureReason, Job, JobSpec, JobState, Resources
from hodei_core.events import Event, JobFinished, topic_matches
from hodei_core.testing.contracts._bus import _sample_events

# A loaded CI machine must not turn a slow example into a failure.
_no_deadline = settings(deadline=None)

_text = st.text(max_size=12)
_floats = st.floats(allow_nan=False)
_specs = st.builds(
    JobSpec,
    command=st.none() | st.lists(_text, max_size=3),
    script=st.none() | _text,
    env=st.dictionaries(_text, _text, max_size=3),
    secrets=st.dictionaries(_text, _text, max_size=3),
    labels=st.frozensets(_text, max_size=3),
    resources=st.builds(Resources, _floats, st.integers()),
    timeout_s=st.none() | _floats,
    retries=st.integers(),
    priority=st.integers(),
    name=_text,
)
_optional_floats = st.none() | _floats
_jobs = st.builds(
    Job,
    id=_text,
    tenant=_text,
    spec=_specs,
    state=st.sampled_from(JobState),
    attempt=st.integers(),
    worker_id=st.none() | _text,
    exit_code=st.none() | st.integers(),
    failure=st.none() | st.sampled_from(FailureReason),
    created_at=_floats,
    assigned_at=_optional_floats,
    started_at=_optional_floats,
    finished_at=_optional_floats,
    run_id=st.none() | _text,
    step=st.none() | _text,
)


def without_secrets(job: Job) -> Job:
    """``job`` as it arrives over NATS: without its secrets."""
    return attrs.evolve(job, spec=attrs.evolve(job.spec, secrets={}))


@_no_deadline
@given(_jobs)
def test_job_finished_round_trips_without_secrets(job: Job) -> None:
    received = decode_event(encode_event(JobFinished(job)))
    assert received == JobFinished(without_secrets(job))
    assert received.job.spec.secrets == {}


def _fields_from_types(cls: type[Event]) -> st.SearchStrategy[Event]:
    # The annotations are strings (postponed evaluation): resolve them here, not on the class.
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{a.name: st.from_type(hints[a.name]) for a in attrs.fields(cls)})


_events = st.one_of(
    st.builds(JobFinished, _jobs),
    *(_fields_from_types(cls) for cls in EVENT_CLASSES.values() if cls is not JobFinished),
)


@_no_deadline
@given(_events)
def test_any_event_round_trips(event: Event) -> None:
    received = decode_event(encode_event(event))
    assert type(received) is type(event)
    if isinstance(event, JobFinished):
        assert received == JobFinished(without_secrets(event.job))
    else:
        assert received == event
    assert received.topic == event.topic


def test_every_event_class_round_trips() -> None:
    samples = _sample_events()
    assert {type(e) for e in samples} == set(typing.get_args(Event)) == set(EVENT_CLASSES.values())
    for event in samples:
        assert decode_event(encode_event(event)) == event


def test_secrets_are_not_sent() -> None:
    job = Job(id="j1", spec=JobSpec(script="deploy", secrets={"API_KEY": "hunter2-s3cr3t"}))
    payload = encode_event(JobFinished(job))
    assert b"hunter2-s3cr3t" not in payload
    assert b"API_KEY" not in payload
    # and a message that carries some anyway (another sender) does not bring them in
    forged = payload.replace(b'"env":{}', b'"env":{},"secrets":{"K":"v"}')
    assert forged != payload
    received = decode_event(forged)
    assert isinstance(received, JobFinished)
    assert received.job.spec.secrets == {}


@pytest.mark.parametrize("payload", [b"", b"{}", b"[1]", b'{"type":"Nope","data":{}}'])
def test_garbage_is_refused_with_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError, match="not a Hodei event"):
        decode_event(payload)


_tokens = st.sampled_from(["a", "b", "", " ", "*", ">", "%", "a*", "%2A", "x y", "\ud800"])


@_no_deadline
@given(st.lists(_tokens, min_size=1, max_size=4), st.lists(_tokens, min_size=1, max_size=4))
def test_subjects_match_exactly_as_topics_do(pattern_tokens: list[str], topic: list[str]) -> None:
    pattern, topic_text = ".".join(pattern_tokens), ".".join(topic)
    subject = topic_subject("p.", topic_text)
    wanted = pattern_subject("p.", pattern)
    assert topic_matches(pattern, topic_text) == topic_matches(wanted, subject)
    # what NATS accepts: no whitespace, no empty tokens, wildcards only as whole tokens
    assert not any(c.isspace() for c in subject + wanted)
    for token in subject.split("."):
        assert token and "*" not in token and ">" not in token
    for i, token in enumerate(wanted.split(".")):
        assert token
        assert token in ("*", ">") or ("*" not in token and ">" not in token)
        assert token != ">" or i == len(wanted.split(".")) - 1
