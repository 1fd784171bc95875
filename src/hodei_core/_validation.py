"""Checks of job specs and pipelines that report every problem at once, each with its path.

Pure functions over domain values: nothing here parses or reads anything. Documents become
values at the edges (``hodei_backends``); these checks then say what is wrong with the values,
so an HTTP body, a pipeline file and an embedded caller are all held to the same rules.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Mapping, Sequence

from hodei_core._models import JobSpec, Step
from hodei_core.errors import JobSpecInvalid, PipelineInvalid, Problem

__all__ = [
    "MAX_RETRIES",
    "MAX_STEPS",
    "check_pipeline",
    "check_spec",
    "pipeline_problems",
    "spec_problems",
    "topological_order",
]

MAX_STEPS = 500
"""The most steps one pipeline may have."""

MAX_RETRIES = 100
"""The most retries one job may ask for."""

_INT32 = 2**31  # priority and memory_mb must fit a 32-bit SQL INTEGER column in any store

# graph[i]: (index of a step that steps[i] depends on, its position in steps[i].depends_on)
_Graph = list[list[tuple[int, int]]]


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _key_at(path: str, key: str) -> str:
    # ``env.HOME`` reads best, but a key that is not an identifier needs quoting to stay legible.
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{key!r}]"


def _show(value: object) -> str:
    # repr() of a huge int is unreadable, and past 4300 digits Python refuses to make it.
    if isinstance(value, int) and value.bit_length() > 64:
        return "a very large integer"
    return repr(value)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _string_problem(value: object, path: str) -> Problem | None:
    # The OS refuses NUL bytes in argv and environ, so catch them here rather than at exec time.
    if not isinstance(value, str):
        return Problem(path, f"expected a string, got {_show(value)}")
    if "\0" in value:
        return Problem(path, "must not contain a NUL character")
    return None


def _variables_problems(variables: Mapping[str, str], path: str) -> list[Problem]:
    problems: list[Problem] = []
    for key, value in variables.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            problems.append(
                Problem(path, f"{key!r} is not a valid variable name (non-empty, no '=' or NUL)")
            )
            continue
        problem = _string_problem(value, _key_at(path, key))
        if problem is not None:
            problems.append(problem)
    return problems


def spec_problems(spec: JobSpec, path: str = "") -> list[Problem]:
    """Everything wrong with a job spec.

    Args:
        spec: The spec to check.
        path: Where the spec sits in a larger document (``steps[2]``), prefixed to each path.

    Returns:
        Every problem found, in field order; empty when the spec is valid.
    """
    problems: list[Problem] = []

    def add(field: str, message: str) -> None:
        problems.append(Problem(_at(path, field), message))

    if spec.command is None and spec.script is None:
        problems.append(Problem(path, "set 'command' (an argv list) or 'script' (run by sh -c)"))
    elif spec.command is not None and spec.script is not None:
        problems.append(Problem(path, "set only one of 'command' and 'script', not both"))
    if spec.command is not None:
        if not spec.command:
            add("command", "must not be empty")
        elif spec.command[0] == "":
            add("command[0]", "the program name must not be empty")
        for i, arg in enumerate(spec.command):
            if not isinstance(arg, str) or "\0" in arg:  # (the path is made only when needed)
                problem = _string_problem(arg, f"{_at(path, 'command')}[{i}]")
                if problem is not None:
                    problems.append(problem)
    if spec.script is not None:
        problem = _string_problem(spec.script, _at(path, "script"))
        if problem is None and not spec.script.strip():
            problem = Problem(_at(path, "script"), "must not be blank")
        if problem is not None:
            problems.append(problem)
    # (every submission comes through here: the paths below are made only when needed)
    if spec.env:
        problems += _variables_problems(spec.env, _at(path, "env"))
    if spec.secrets:
        problems += _variables_problems(spec.secrets, _at(path, "secrets"))
    # A frozenset has no order and no index: sort so that the output is reproducible.
    if spec.labels:
        for label in sorted(spec.labels, key=repr):
            if not isinstance(label, str) or not label.strip():
                add("labels", f"{label!r} is not a valid label")
    cpu, memory_mb = spec.resources.cpu, spec.resources.memory_mb
    if not _is_number(cpu) or not math.isfinite(cpu) or cpu < 0:
        add("resources.cpu", f"must be a number >= 0, got {_show(cpu)}")
    if not _is_int(memory_mb) or not 0 <= memory_mb < _INT32:
        add(
            "resources.memory_mb",
            f"must be an integer from 0 to {_INT32 - 1}, got {_show(memory_mb)}",
        )
    timeout = spec.timeout_s
    # NaN fails every comparison, and an infinite timeout is better written as no timeout.
    if timeout is not None and (not _is_number(timeout) or not 0 < timeout < math.inf):
        add("timeout_s", f"must be a positive number of seconds, got {_show(timeout)}")
    if not _is_int(spec.retries) or not 0 <= spec.retries <= MAX_RETRIES:
        add("retries", f"must be an integer from 0 to {MAX_RETRIES}, got {_show(spec.retries)}")
    if not _is_int(spec.priority) or not -_INT32 <= spec.priority < _INT32:
        add(
            "priority",
            f"must be an integer from {-_INT32} to {_INT32 - 1}, got {_show(spec.priority)}",
        )
    return problems


def check_spec(spec: JobSpec) -> None:
    """Refuse an invalid job spec.

    Raises:
        JobSpecInvalid: With every problem of ``spec``.
    """
    problems = spec_problems(spec)
    if problems:
        raise JobSpecInvalid(problems)


def _structure_problems(steps: Sequence[Step]) -> tuple[list[list[Problem]], list[Problem]]:
    """Name and dependency problems per step, then cycle problems."""
    per_step: list[list[Problem]] = [[] for _ in steps]
    first_at: dict[str, int] = {}
    for i, step in enumerate(steps):
        if not step.name.strip():
            per_step[i].append(Problem(f"steps[{i}].name", "must not be empty"))
        elif step.name in first_at:
            per_step[i].append(
                Problem(
                    f"steps[{i}].name",
                    f"duplicate step name {step.name!r} (first at steps[{first_at[step.name]}])",
                )
            )
        else:
            first_at[step.name] = i
    for i, step in enumerate(steps):
        seen: dict[str, int] = {}
        for j, dep in enumerate(step.depends_on):
            dep_at = f"steps[{i}].depends_on[{j}]"
            if step.name and dep == step.name:
                per_step[i].append(Problem(dep_at, f"step {dep!r} cannot depend on itself"))
            elif dep in seen:
                message = f"duplicate dependency {dep!r} (first at depends_on[{seen[dep]}])"
                per_step[i].append(Problem(dep_at, message))
            elif dep not in first_at:
                per_step[i].append(Problem(dep_at, f"unknown step {dep!r}"))
            seen.setdefault(dep, j)
    return per_step, _cycle_problems(steps, first_at)


def _cycle_problems(steps: Sequence[Step], first_at: Mapping[str, int]) -> list[Problem]:
    """One problem per group of steps caught in cycles (a strongly connected component).

    Each names the shortest cycle through the group's first step in file order, at the
    dependency that closes it, and lists the rest of the group: one wrong edge in a dense graph
    closes many cycles, and one line per cycle would bury it. Edges already reported otherwise
    (on itself, repeated, unknown, or from a step with a duplicate name) are left out.
    """
    graph: _Graph = [[] for _ in steps]
    for i, step in enumerate(steps):
        if first_at.get(step.name) != i:
            continue
        targets: set[int] = set()
        for j, dep in enumerate(step.depends_on):
            k = first_at.get(dep)
            if k is not None and k != i and k not in targets:
                targets.add(k)
                graph[i].append((k, j))
    problems: list[Problem] = []
    for group in sorted((c for c in _components(graph) if len(c) > 1), key=min):
        root, members = min(group), set(group)
        # Breadth-first from the root, inside the group, until an edge leads back to it.
        came_from: dict[int, int] = {}
        queue, closing = deque([root]), None
        while closing is None:
            node = queue.popleft()
            for target, j in graph[node]:
                if target == root:
                    closing = (node, j)
                    break
                if target in members and target not in came_from:
                    came_from[target] = node
                    queue.append(target)
        cycle = [closing[0]]
        while cycle[-1] != root:
            cycle.append(came_from[cycle[-1]])
        names = [steps[k].name for k in reversed(cycle)] + [steps[root].name]
        message = "cycle: " + " -> ".join(names)
        others = sorted(members.difference(cycle))
        if others:
            message += f" (also caught in it: {', '.join(steps[k].name for k in others)})"
        problems.append(Problem(f"steps[{closing[0]}].depends_on[{closing[1]}]", message))
    return problems


def _components(graph: _Graph) -> list[list[int]]:
    """Tarjan's strongly connected components, with an explicit stack instead of recursion.

    A 500-step chain would otherwise be 500 frames deep.
    """
    index, low = [-1] * len(graph), [0] * len(graph)
    on_stack = [False] * len(graph)
    stack: list[int] = []
    components: list[list[int]] = []
    counter = 0
    for start in range(len(graph)):
        if index[start] != -1:
            continue
        work = [(start, 0)]  # (node, how many of its edges are already followed)
        while work:
            node, cursor = work[-1]
            if cursor == 0 and index[node] == -1:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack[node] = True
            if cursor < len(graph[node]):
                work[-1] = (node, cursor + 1)
                target = graph[node][cursor][0]
                if index[target] == -1:
                    work.append((target, 0))
                elif on_stack[target]:
                    low[node] = min(low[node], index[target])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[int] = []
                while not component or component[-1] != node:
                    member = stack.pop()
                    on_stack[member] = False
                    component.append(member)
                components.append(component)
    return components


def pipeline_problems(name: str, steps: Sequence[Step]) -> list[Problem]:
    """Everything wrong with a pipeline, at once.

    Each step's problems come in file order (its name, its dependencies, its spec under
    ``steps[i]``); cycles come last, one per group of steps caught in cycles, as
    ``cycle: a -> b -> a`` where each arrow points from a step to a step it depends on.

    Args:
        name: The pipeline's name.
        steps: Its steps, in file order.

    Returns:
        Every problem found, deterministic for a given input; empty when the pipeline is valid.
    """
    problems: list[Problem] = []
    if not name.strip():
        problems.append(Problem("name", "must not be empty"))
    if not steps:
        problems.append(Problem("steps", "a pipeline needs at least one step"))
    elif len(steps) > MAX_STEPS:
        problems.append(Problem("steps", f"{len(steps)} steps; at most {MAX_STEPS} are allowed"))
    per_step, cycles = _structure_problems(steps)
    for i, step in enumerate(steps):
        problems += per_step[i]
        problems += spec_problems(step.spec, f"steps[{i}]")
    return problems + cycles


def check_pipeline(name: str, steps: Sequence[Step]) -> None:
    """Refuse an invalid pipeline.

    Raises:
        PipelineInvalid: With every problem of the pipeline.
    """
    problems = pipeline_problems(name, steps)
    if problems:
        raise PipelineInvalid(problems)


def topological_order(steps: Sequence[Step]) -> list[str]:
    """The step names in an order that puts every step after all its dependencies.

    Stable: among the steps that are ready, the one earliest in the file comes first, so a
    file already written in dependency order comes back unchanged.

    Raises:
        PipelineInvalid: If step names or dependencies are broken (empty or duplicate names,
            unknown or repeated dependencies, cycles); specs are not looked at.
    """
    per_step, cycles = _structure_problems(steps)
    problems = [problem for step_problems in per_step for problem in step_problems] + cycles
    if problems:
        raise PipelineInvalid(problems)
    index = {step.name: i for i, step in enumerate(steps)}
    waiting_on = [len(step.depends_on) for step in steps]
    dependents: list[list[int]] = [[] for _ in steps]
    for i, step in enumerate(steps):
        for dep in step.depends_on:
            dependents[index[dep]].append(i)
    ready = [i for i, count in enumerate(waiting_on) if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(steps[i].name)
        for dependent in dependents[i]:
            waiting_on[dependent] -= 1
            if waiting_on[dependent] == 0:
                heapq.heappush(ready, dependent)
    return order
