"""Pipeline and job documents (JSON, YAML) turned into domain values, with precise problems."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from hodei_backends._documents import (
    load_pipeline_file,
    load_pipeline_text,
    parse_job_spec,
    parse_pipeline_document,
)
from hodei_core._models import JobSpec, Resources, Step
from hodei_core._validation import topological_order
from hodei_core.errors import JobSpecInvalid, PipelineInvalid

EXAMPLES = Path(__file__).parent.parent / "examples"

GOOD_YAML = """\
name: hello
steps:
  - name: build
    script: echo building
  - name: test
    command: [./run-tests.sh, --fast]
    depends_on: [build]
    env: {LEVEL: full, WORKERS: 3, RATIO: 0.5}
    secrets: {API_KEY: "abc"}
    labels: [linux, docker]
    timeout_s: 600
    retries: 1
    priority: -2
    resources: {cpu: 1.5, memory_mb: 512}
"""

EXPECTED_STEPS = [
    Step(name="build", spec=JobSpec(name="build", script="echo building")),
    Step(
        name="test",
        spec=JobSpec(
            name="test",
            command=["./run-tests.sh", "--fast"],
            env={"LEVEL": "full", "WORKERS": "3", "RATIO": "0.5"},
            secrets={"API_KEY": "abc"},
            labels={"linux", "docker"},
            timeout_s=600.0,
            retries=1,
            priority=-2,
            resources=Resources(cpu=1.5, memory_mb=512),
        ),
        depends_on=["build"],
    ),
]


def problems_of(doc: object) -> list[str]:
    with pytest.raises(PipelineInvalid) as info:
        parse_pipeline_document(doc)
    return [str(p) for p in info.value.problems]


def pipeline(*steps: object) -> dict[str, Any]:
    return {"name": "p", "steps": list(steps)}


# -- good documents ---------------------------------------------------------------------------


def test_yaml_parses_to_the_expected_steps() -> None:
    assert load_pipeline_text(GOOD_YAML) == ("hello", EXPECTED_STEPS)


def test_json_parses_to_the_same_steps() -> None:
    doc = load_pipeline_text(GOOD_YAML)
    text = json.dumps(yaml.safe_load(GOOD_YAML))
    assert load_pipeline_text(text) == doc
    assert parse_pipeline_document(json.loads(text)) == doc


def test_null_means_the_default() -> None:
    _, steps = parse_pipeline_document(
        pipeline({"name": "a", "script": "x", "env": None, "timeout_s": None, "command": None})
    )
    assert steps == [Step(name="a", spec=JobSpec(name="a", script="x"))]


def test_the_example_pipeline_parses() -> None:
    name, steps = load_pipeline_file(EXAMPLES / "hello.yaml")
    assert name == "hello"
    assert topological_order(steps) == ["build", "test-unit", "test-lint", "package"]
    assert any(s.spec.secrets for s in steps)
    assert any(s.spec.env for s in steps)


def test_parse_job_spec() -> None:
    spec = parse_job_spec({"command": ["make"], "env": {"N": 2}, "name": "m", "labels": ["x"]})
    assert spec == JobSpec(command=["make"], env={"N": "2"}, name="m", labels={"x"})


# -- bad documents ----------------------------------------------------------------------------


S = {"name": "a", "script": "x"}  # a valid step, to add one bad field to


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (
            {**S, "timeout": 5},
            "timeout: unknown field; did you mean 'timeout_s'? allowed: command, depends_on, env, "
            "labels, name, priority, resources, retries, script, secrets, timeout_s",
        ),
        ({**S, "timeout_s": "abc"}, "timeout_s: expected a number, got 'abc'"),
        ({**S, "timeout_s": 10**400}, "timeout_s: number is too large"),
        ({**S, "retries": True}, "retries: expected an integer, got true"),
        ({**S, "retries": 1.5}, "retries: expected an integer, got 1.5"),
        ({**S, "priority": "hi"}, "priority: expected an integer, got 'hi'"),
        ({"name": 3, "script": "x"}, "name: expected a string, got 3"),
        ({"script": "x"}, "name: required"),
        ({"name": "a", "script": ["x"]}, "script: expected a string, got a list"),
        (
            {"name": "a", "command": "make all"},
            "command: expected a list of strings, got 'make all' "
            "(to run a shell command line, use 'script')",
        ),
        ({"name": "a", "command": ["make", 1]}, "command[1]: expected a string, got 1"),
        ({**S, "depends_on": "b"}, "depends_on: expected a list of strings, got 'b' (write [b])"),
        ({**S, "labels": [None]}, "labels[0]: expected a string, got null"),
        ({**S, "env": ["A=1"]}, "env: expected a mapping of names to strings, got a list"),
        ({**S, "env": {1: "x"}}, "env: names must be strings, got 1"),
        ({**S, "env": {"A": {"b": 1}}}, "env.A: expected a string, got a mapping"),
        ({**S, "secrets": {"my key": []}}, "secrets['my key']: expected a string, got a list"),
        ({**S, "resources": {"cpu": "2"}}, "resources.cpu: expected a number, got '2'"),
        (
            {**S, "resources": {"memory_mb": 1.5}},
            "resources.memory_mb: expected an integer, got 1.5",
        ),
        ({**S, "resources": {"gpu": 1}}, "resources.gpu: unknown field; allowed: cpu, memory_mb"),
        ({"name": "a", "script": "x", 7: 1}, ": field names must be strings, got 7"),
        ("build", ": expected a step mapping, got 'build'"),
    ],
)
def test_each_type_problem_has_a_path_and_a_message(step: object, expected: str) -> None:
    assert problems_of(pipeline(step)) == [f"steps[0]{'' if expected[0] == ':' else '.'}{expected}"]


def test_booleans_in_env_are_refused_with_the_yaml_reason() -> None:
    with pytest.raises(PipelineInvalid) as info:
        load_pipeline_text("name: p\nsteps:\n- name: a\n  script: x\n  env: {DEBUG: yes}\n")
    assert [str(p) for p in info.value.problems] == [
        "steps[0].env.DEBUG: expected a string, got true (YAML reads unquoted "
        "yes/no/on/off/true/false as booleans: quote the value)"
    ]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ([1], ["expected a mapping with 'name' and 'steps', got a list"]),
        ({}, ["name: required", "steps: required"]),
        ({"name": "p", "steps": "build"}, ["steps: expected a list of steps, got 'build'"]),
        ({"name": "p", "steps": []}, ["steps: a pipeline needs at least one step"]),
        (
            {"name": "p", "steps": [], "stages": []},
            [
                "stages: unknown field; did you mean 'steps'? allowed: name, steps",
                "steps: a pipeline needs at least one step",
            ],
        ),
    ],
)
def test_document_level_problems(doc: object, expected: list[str]) -> None:
    assert problems_of(doc) == expected


def test_many_problems_are_reported_together() -> None:
    doc = {
        "name": "",
        "steps": [
            {"name": "build", "script": "make", "timeout_s": "1h"},
            {"name": "test", "command": [], "depends_on": ["build", "lint"], "retries": -1},
            {"name": "build", "script": "x", "depends_on": ["test"]},
            {"script": "orphan"},
        ],
    }
    assert problems_of(doc) == [
        # type problems first, in document order
        "steps[0].timeout_s: expected a number, got '1h'",
        "steps[3].name: required",
        # then the domain's, for what was well typed
        "name: must not be empty",
        "steps[1].depends_on[1]: unknown step 'lint'",
        "steps[1].command: must not be empty",
        "steps[1].retries: must be an integer from 0 to 100, got -1",
        "steps[2].name: duplicate step name 'build' (first at steps[0])",
    ]


def test_cycles_are_named() -> None:
    doc = pipeline(
        {"name": "a", "script": "x", "depends_on": ["c"]},
        {"name": "b", "script": "x", "depends_on": ["a"]},
        {"name": "c", "script": "x", "depends_on": ["b"]},
    )
    assert problems_of(doc) == ["steps[1].depends_on[0]: cycle: a -> c -> b -> a"]


def test_a_step_with_type_problems_still_counts_as_a_dependency() -> None:
    doc = pipeline(
        {"name": "a", "script": "x", "retries": "2"},
        {"name": "b", "script": "x", "depends_on": ["a"]},
    )
    assert problems_of(doc) == ["steps[0].retries: expected an integer, got '2'"]


def test_parse_job_spec_problems() -> None:
    with pytest.raises(JobSpecInvalid) as info:
        parse_job_spec({"script": 1, "depends_on": ["x"]}, "job")
    assert [str(p) for p in info.value.problems] == [
        "job.script: expected a string, got 1",
        "job.depends_on: unknown field; allowed: command, env, labels, name, priority, "
        "resources, retries, script, secrets, timeout_s",
    ]
    with pytest.raises(JobSpecInvalid) as info:
        parse_job_spec({"script": "x", "timeout_s": -1})
    assert [str(p) for p in info.value.problems] == [
        "timeout_s: must be a positive number of seconds, got -1.0"
    ]
    with pytest.raises(JobSpecInvalid) as info:
        parse_job_spec("echo")
    assert [str(p) for p in info.value.problems] == ["expected a job spec mapping, got 'echo'"]


# -- text and files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: [unclosed\n", "line 2, column 1: while parsing a flow sequence, expected ','"),
        ("name: a\n  bad: indent\n", "line 2, column 6: mapping values are not allowed here"),
        ("name: a\nname: b\n", "line 2, column 1: while constructing a mapping, found duplicate"),
        ("name: a\n---\nname: b\n", "line 2, column 1: expected a single document in the stream"),
        ("retries: " + "1" * 5000, "Exceeds the limit (4300 digits)"),
        ("when: 2024-13-45", "month must be in 1..12"),
    ],
)
def test_malformed_yaml_is_one_clear_line(text: str, expected: str) -> None:
    with pytest.raises(PipelineInvalid) as info:
        load_pipeline_text(text, filename="p.yaml")
    (problem,) = info.value.problems
    assert problem.path == ""
    assert problem.message.startswith(f"p.yaml: not valid YAML: {expected}")
    assert "\n" not in problem.message


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_an_empty_document_is_named(text: str) -> None:
    with pytest.raises(PipelineInvalid) as info:
        load_pipeline_text(text, filename="p.yaml")
    assert [str(p) for p in info.value.problems] == ["p.yaml: the document is empty"]


def test_yaml_merge_keys_are_not_duplicates() -> None:
    text = """\
name: p
defaults: &defaults {script: echo hi, retries: 2}
"""
    with pytest.raises(PipelineInvalid) as info:
        load_pipeline_text(text)
    assert [p.path for p in info.value.problems] == ["defaults", "steps"]
    text = """\
name: p
steps:
  - &base {name: a, script: echo hi, retries: 2}
  - <<: *base
    name: b
    retries: 3
"""
    _, steps = load_pipeline_text(text)
    assert steps[1] == Step(name="b", spec=JobSpec(name="b", script="echo hi", retries=3))


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(PipelineInvalid) as info:
        load_pipeline_file(tmp_path / "missing.yaml")
    assert (
        str(info.value.problems[0])
        == f"cannot read {tmp_path / 'missing.yaml'}: No such file or directory"
    )
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\n")
    with pytest.raises(PipelineInvalid) as info:
        load_pipeline_file(binary)
    assert str(info.value.problems[0]) == f"cannot read {binary}: not UTF-8 text (byte 6)"


def test_file_syntax_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("steps: [\n", encoding="utf-8")
    with pytest.raises(PipelineInvalid) as info:
        load_pipeline_file(path)
    assert str(info.value.problems[0]).startswith(f"{path}: not valid YAML: line 2, column 1:")
