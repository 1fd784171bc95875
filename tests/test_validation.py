"""Pure validation of job specs and pipelines: every problem at once, each with its path."""

from __future__ import annotations

import graphlib
import itertools
import re
import time

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hodei_core._models import JobSpec, Resources, Step
from hodei_core._validation import (
    MAX_STEPS,
    check_pipeline,
    check_spec,
    pipeline_problems,
    spec_problems,
    topological_order,
)
from hodei_core.errors import JobSpecInvalid, PipelineInvalid, Problem

OK = JobSpec(script="true")


def step(name: str, *deps: str, spec: JobSpec = OK) -> Step:
    return Step(name=name, spec=spec, depends_on=deps)


def lines(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


# -- job specs --------------------------------------------------------------------------------


def test_valid_specs_have_no_problems() -> None:
    assert spec_problems(OK) == []
    assert spec_problems(JobSpec(command=["echo", ""], env={"A": "1"}, labels={"linux"})) == []
    check_spec(JobSpec(command=["ls"], timeout_s=0.5, retries=100, resources=Resources(1.5, 64)))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (JobSpec(), "set 'command' (an argv list) or 'script' (run by sh -c)"),
        (JobSpec(command=["a"], script="b"), "set only one of 'command' and 'script', not both"),
        (JobSpec(command=[]), "command: must not be empty"),
        (JobSpec(command=["", "x"]), "command[0]: the program name must not be empty"),
        (JobSpec(command=["a", "b\0"]), "command[1]: must not contain a NUL character"),
        (JobSpec(script="  \n"), "script: must not be blank"),
        (
            JobSpec(script="x", timeout_s=0),
            "timeout_s: must be a positive number of seconds, got 0",
        ),
        (JobSpec(script="x", timeout_s=-1.0), "timeout_s: must be a positive number of seconds"),
        (JobSpec(script="x", timeout_s=float("nan")), "timeout_s: must be a positive number"),
        (JobSpec(script="x", timeout_s=float("inf")), "timeout_s: must be a positive number"),
        (JobSpec(script="x", retries=-1), "retries: must be an integer from 0 to 100, got -1"),
        (JobSpec(script="x", retries=101), "retries: must be an integer from 0 to 100, got 101"),
        (JobSpec(script="x", resources=Resources(cpu=-1)), "resources.cpu: must be a number >= 0"),
        (JobSpec(script="x", resources=Resources(memory_mb=-5)), "resources.memory_mb: must be"),
        (JobSpec(script="x", resources=Resources(memory_mb=2**31)), "resources.memory_mb: must be"),
        (
            JobSpec(script="x", priority=-(2**31) - 1),
            "priority: must be an integer from -2147483648",
        ),
        (
            JobSpec(script="x", retries=10**5000),
            "retries: must be an integer from 0 to 100, got a very large integer",
        ),
        (JobSpec(script="x", env={"": "v"}), "env: '' is not a valid variable name"),
        (JobSpec(script="x", env={"A=B": "v"}), "env: 'A=B' is not a valid variable name"),
        (JobSpec(script="x", secrets={"K\0": "v"}), "secrets: 'K\\x00' is not a valid variable"),
        (JobSpec(script="x", env={"A": "v\0"}), "env.A: must not contain a NUL character"),
        (JobSpec(script="x", labels={""}), "labels: '' is not a valid label"),
    ],
)
def test_each_spec_problem(spec: JobSpec, expected: str) -> None:
    problems = lines(spec_problems(spec))
    assert len(problems) == 1
    assert problems[0].startswith(expected)


def test_spec_paths_are_prefixed_and_all_problems_come_at_once() -> None:
    spec = JobSpec(command=[], timeout_s=-1, retries=-1, env={"=": "x"})
    assert [p.path for p in spec_problems(spec, "steps[4]")] == [
        "steps[4].command",
        "steps[4].env",
        "steps[4].timeout_s",
        "steps[4].retries",
    ]
    with pytest.raises(JobSpecInvalid) as info:
        check_spec(spec)
    assert [p.path for p in info.value.problems] == ["command", "env", "timeout_s", "retries"]


# -- pipelines --------------------------------------------------------------------------------


def test_valid_pipeline() -> None:
    steps = [
        step("build"),
        step("unit", "build"),
        step("lint", "build"),
        step("pkg", "unit", "lint"),
    ]
    assert pipeline_problems("hello", steps) == []
    check_pipeline("hello", steps)
    assert topological_order(steps) == ["build", "unit", "lint", "pkg"]


def test_forward_references_are_allowed_and_ordered() -> None:
    steps = [step("pkg", "test"), step("test", "build"), step("build")]
    assert pipeline_problems("p", steps) == []
    assert topological_order(steps) == ["build", "test", "pkg"]


@pytest.mark.parametrize(
    ("name", "steps", "expected"),
    [
        (" ", [step("a")], ["name: must not be empty"]),
        ("p", [], ["steps: a pipeline needs at least one step"]),
        ("p", [step("a"), step("")], ["steps[1].name: must not be empty"]),
        (
            "p",
            [step("build"), step("x"), step("y"), step("build")],
            ["steps[3].name: duplicate step name 'build' (first at steps[0])"],
        ),
        ("p", [step("a"), step("b"), step("c", "x")], ["steps[2].depends_on[0]: unknown step 'x'"]),
        ("p", [step("a", "a")], ["steps[0].depends_on[0]: step 'a' cannot depend on itself"]),
        (
            "p",
            [step("a"), step("b", "a", "a")],
            ["steps[1].depends_on[1]: duplicate dependency 'a' (first at depends_on[0])"],
        ),
        (
            "p",
            [step("a", "c"), step("b", "a"), step("c", "b")],
            ["steps[1].depends_on[0]: cycle: a -> c -> b -> a"],
        ),
        ("p", [step("a", spec=JobSpec())], ["steps[0]: set 'command' (an argv list) or 'script'"]),
    ],
)
def test_each_pipeline_problem(name: str, steps: list[Step], expected: list[str]) -> None:
    problems = lines(pipeline_problems(name, steps))
    assert len(problems) == len(expected)
    for got, want in zip(problems, expected, strict=True):
        assert got.startswith(want)


def test_too_many_steps() -> None:
    steps = [step(f"s{i}") for i in range(MAX_STEPS + 1)]
    assert lines(pipeline_problems("p", steps)) == ["steps: 501 steps; at most 500 are allowed"]
    assert pipeline_problems("p", steps[:MAX_STEPS]) == []


def test_every_problem_at_once_in_file_order_then_cycles() -> None:
    steps = [
        step("a", "d", spec=JobSpec(script="x", timeout_s=0)),
        step("b", "a", "nope"),
        step("a"),
        step("d", "b", "d"),
    ]
    with pytest.raises(PipelineInvalid) as info:
        check_pipeline("", steps)
    assert lines(list(info.value.problems)) == [
        "name: must not be empty",
        "steps[0].timeout_s: must be a positive number of seconds, got 0",
        "steps[1].depends_on[1]: unknown step 'nope'",
        "steps[2].name: duplicate step name 'a' (first at steps[0])",
        "steps[3].depends_on[1]: step 'd' cannot depend on itself",
        "steps[1].depends_on[0]: cycle: a -> d -> b -> a",
    ]
    assert "pipeline is invalid (6 problems)" in str(info.value)


def test_each_group_of_cycles_is_one_problem_and_output_is_deterministic() -> None:
    # Two cycles through a (a -> b -> a, a -> c -> a) form one group; x and y another.
    steps = [step("a", "b", "c"), step("b", "a"), step("c", "a"), step("x", "y"), step("y", "x")]
    problems = lines(pipeline_problems("p", steps))
    assert problems == [
        "steps[1].depends_on[0]: cycle: a -> b -> a (also caught in it: c)",
        "steps[4].depends_on[0]: cycle: x -> y -> x",
    ]
    assert lines(pipeline_problems("p", list(steps))) == problems


def test_a_dense_cyclic_graph_is_one_short_problem() -> None:
    names = [f"s{i}" for i in range(MAX_STEPS)]
    steps = [step(n, *(m for m in names if m != n)) for n in names]
    (problem,) = pipeline_problems("p", steps)
    assert str(problem).startswith("steps[1].depends_on[0]: cycle: s0 -> s1 -> s0 (also caught")


def test_long_chains_validate_fast_without_recursion() -> None:
    chain = [step("s0")] + [step(f"s{i}", f"s{i - 1}") for i in range(1, MAX_STEPS)]
    ring = [step("s0", f"s{MAX_STEPS - 1}"), *chain[1:]]
    dense = [step(f"s{i}", *(f"s{j}" for j in range(i))) for i in range(MAX_STEPS)]
    started = time.perf_counter()
    assert pipeline_problems("p", chain) == []
    assert topological_order(chain) == [s.name for s in chain]
    (cycle,) = pipeline_problems("p", ring)
    assert str(cycle).count("->") == MAX_STEPS
    assert pipeline_problems("p", dense) == []
    assert topological_order(dense) == [s.name for s in dense]
    assert time.perf_counter() - started < 2.0


def test_topological_order_refuses_a_broken_graph() -> None:
    with pytest.raises(PipelineInvalid) as info:
        topological_order([step("a", "b"), step("b", "a")])
    assert lines(list(info.value.problems)) == ["steps[1].depends_on[0]: cycle: a -> b -> a"]


# -- properties -------------------------------------------------------------------------------


@st.composite
def dags(draw: st.DrawFn) -> list[Step]:
    """Random DAGs: edges only from later to earlier steps, then shuffled into file order."""
    n = draw(st.integers(1, 25))
    steps = [
        step(f"s{i}", *draw(st.lists(st.sampled_from([f"s{j}" for j in range(i)]), unique=True)))
        if i
        else step("s0")
        for i in range(n)
    ]
    return draw(st.permutations(steps))


@given(dags())
def test_random_dags_are_valid_and_ordered(steps: list[Step]) -> None:
    assert pipeline_problems("p", steps) == []
    order = topological_order(steps)
    assert sorted(order) == sorted(s.name for s in steps)
    position = {name: i for i, name in enumerate(order)}
    for s in steps:
        assert all(position[dep] < position[s.name] for dep in s.depends_on)


@given(dags(), st.data())
def test_a_back_edge_makes_a_named_cycle(steps: list[Step], data: st.DataObject) -> None:
    edges = [(s.name, dep) for s in steps for dep in s.depends_on]
    assume(edges)
    later, earlier = data.draw(st.sampled_from(edges))
    steps = [
        Step(name=s.name, spec=s.spec, depends_on=(*s.depends_on, later))
        if s.name == earlier
        else s
        for s in steps
    ]
    (problem,) = pipeline_problems("p", steps)
    assert_names_a_real_cycle(problem, steps)
    assert {earlier, later} <= set(re.findall(r"s\d+", problem.message))


def assert_names_a_real_cycle(problem: Problem, steps: list[Step]) -> None:
    graph = {s.name: set(s.depends_on) for s in steps}
    cycle = problem.message.removeprefix("cycle: ").split(" (")[0].split(" -> ")
    assert problem.message.startswith("cycle: ")
    assert cycle[0] == cycle[-1]
    assert all(b in graph[a] for a, b in itertools.pairwise(cycle))
    i = int(problem.path.split("]")[0].removeprefix("steps["))
    assert (steps[i].name, cycle[0]) == (cycle[-2], cycle[-1])  # the path is the closing edge


@st.composite
def digraphs(draw: st.DrawFn) -> list[Step]:
    """Random directed graphs, cycles allowed (self and repeated edges left out)."""
    n = draw(st.integers(2, 12))
    names = [f"s{i}" for i in range(n)]
    return [
        step(name, *draw(st.lists(st.sampled_from([m for m in names if m != name]), unique=True)))
        for name in names
    ]


@given(digraphs())
def test_cycles_are_reported_exactly_when_there_are_some(steps: list[Step]) -> None:
    problems = pipeline_problems("p", steps)
    graph = {s.name: s.depends_on for s in steps}
    try:
        expected = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError:
        expected = None
    if expected is not None:
        assert problems == []
        assert sorted(topological_order(steps)) == sorted(expected)
        return
    for problem in problems:
        assert_names_a_real_cycle(problem, steps)
    # Every step that lies on some cycle is named by one of the problems.
    on_cycle = {name for name in graph if name in reachable(graph, graph[name])}
    named = set(re.findall(r"s\d+", " ".join(p.message for p in problems)))
    assert on_cycle == named


def reachable(graph: dict[str, tuple[str, ...]], start: tuple[str, ...]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name])
    return seen
