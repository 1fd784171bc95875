"""Events: how subscription patterns match topics, and the topic of each event class."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hodei_core import Job, JobSpec, RunState
from hodei_core.events import (
    JobAssigned,
    JobCancelRequested,
    JobFinished,
    JobStarted,
    JobSubmitted,
    LogAppended,
    RunFinished,
    SchedulerWake,
    WorkerDrainRequested,
    WorkerLost,
    WorkerRegistered,
    topic_matches,
)


def reference_matches(pattern: str, topic: str) -> bool:
    """The documented rule, written differently: a regular expression per pattern.

    ``*`` is one token (no dots, not empty) and a final ``>`` is one or more tokens.
    """
    tokens = pattern.split(".")
    parts = [
        "[^.]+" if token == "*" else ".+" if token == ">" else re.escape(token) for token in tokens
    ]
    return re.fullmatch(r"\.".join(parts), topic) is not None


# Few distinct tokens, so that random patterns and topics often agree on some of them.
tokens = st.sampled_from(["a", "b", "c", "jobs", "w-1"])
topics = st.lists(tokens, min_size=1, max_size=5).map(".".join)


@st.composite
def patterns_near(draw: st.DrawFn, topic: str) -> str:
    """A pattern made from ``topic``: some tokens wildcarded, maybe cut short by ``>``, maybe
    with tokens changed, added or dropped, so that matches and near misses both come up."""
    parts = topic.split(".")
    parts = [draw(st.sampled_from([t, "*", t, draw(tokens)])) for t in parts]
    if draw(st.booleans()):
        parts = [*parts[: draw(st.integers(0, len(parts)))], ">"]
    elif draw(st.booleans()):
        parts = [*parts, *draw(st.lists(tokens, max_size=2))]
    if draw(st.booleans()) and len(parts) > 1:
        del parts[draw(st.integers(0, len(parts) - 2))]
    return ".".join(parts)


@st.composite
def pattern_and_topic(draw: st.DrawFn) -> tuple[str, str]:
    topic = draw(topics)
    if draw(st.booleans()):
        pattern = draw(patterns_near(topic))
    else:
        pattern = ".".join(
            draw(st.lists(st.one_of(tokens, st.just("*")), min_size=1, max_size=5))
        ) + draw(st.sampled_from(["", ".>"]))
    return pattern, topic


@given(pattern_and_topic())
def test_topic_matches_agrees_with_the_reference(case: tuple[str, str]) -> None:
    pattern, topic = case
    assert topic_matches(pattern, topic) == reference_matches(pattern, topic)


@given(topics)
def test_a_topic_matches_itself_and_everything_matches_gt(topic: str) -> None:
    assert topic_matches(topic, topic)
    assert topic_matches(">", topic)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.b", "a.b.c", False),
        ("a.b.c", "a.b", False),
        ("a.b", "a.c", False),
        ("*", "a", True),
        ("*", "a.b", False),
        ("*.*", "a.b", True),
        ("a.*", "a", False),  # `*` is exactly one token, never none
        ("a.*.c", "a.b.b.c", False),  # ... and never two
        ("jobs.*.j1.started", "jobs.t1.j1.started", True),
        (">", "a", True),
        (">", "a.b.c", True),
        ("a.>", "a", False),  # `>` needs at least one token
        ("a.>", "a.b", True),
        ("a.>", "a.b.c.d", True),
        ("a.*.>", "a.b", False),
        ("a.*.>", "a.b.c", True),
        ("workers.w1.>", "workers.w10.lost", False),  # tokens, not string prefixes
        ("jobs.t1", "jobs.t10", False),
    ],
)
def test_topic_matches_examples(pattern: str, topic: str, expected: bool) -> None:
    assert topic_matches(pattern, topic) is expected
    assert reference_matches(pattern, topic) is expected


def test_event_topics() -> None:
    job = Job(id="j1", tenant="t1", spec=JobSpec(command=["true"]))
    assert JobSubmitted("j1", "t1").topic == "jobs.t1.j1.submitted"
    assert JobAssigned("j1", "t1", 2, "w1").topic == "workers.w1.assigned"
    assert JobStarted("j1", "t1", 2, "w1").topic == "jobs.t1.j1.started"
    assert LogAppended("j1", "t1", 2, 7).topic == "jobs.t1.j1.log"
    assert JobFinished(job).topic == "jobs.t1.j1.finished"
    assert JobCancelRequested("j1", "t1", 2, "w1").topic == "workers.w1.cancel"
    assert WorkerRegistered("w1").topic == "workers.w1.registered"
    assert WorkerDrainRequested("w1").topic == "workers.w1.drain"
    assert WorkerLost("w1", ("j1",)).topic == "workers.w1.lost"
    assert RunFinished("r1", "t1", RunState.SUCCEEDED).topic == "runs.t1.r1.finished"
    assert SchedulerWake().topic == "sched.wake"
