"""Pipeline and job documents (parsed JSON or YAML) turned into domain values, at the edge.

A document is plain data: dicts, lists, strings and numbers. Its shape is checked here, field
by field, with a path on every problem (``steps[1].timeout_s: expected a number, got 'abc'``);
then the values go through the domain's own checks (``hodei_core._validation``), and all
problems of both kinds are raised together, once.

A ``null`` value means the same as leaving the field out, so ``env:`` with nothing after it in
YAML, or ``"timeout_s": null`` from a JSON client, simply keeps the default.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from hodei_core._models import JobSpec, Resources, Step
from hodei_core._validation import pipeline_problems, spec_problems
from hodei_core.errors import JobSpecInvalid, PipelineInvalid, Problem

__all__ = ["load_pipeline_file", "load_pipeline_text", "parse_job_spec", "parse_pipeline_document"]

# A parser takes a value and its path, appends any problem, and returns the domain value or _BAD.
_Parser = Callable[[object, str, list[Problem]], Any]
_BAD: Any = object()


def _at(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _show(value: object) -> str:
    """A value as the document's author would recognise it: JSON/YAML words, short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:36] + "...")
    if isinstance(value, int) and value.bit_length() > 64:
        return "a very large integer"  # repr() of a huge int is long, or even refused
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _expected(what: str, value: object, path: str, problems: list[Problem], hint: str = "") -> Any:
    problems.append(Problem(path, f"expected {what}, got {_show(value)}{hint}"))
    return _BAD


def _string(value: object, path: str, problems: list[Problem]) -> Any:
    return value if isinstance(value, str) else _expected("a string", value, path, problems)


def _number(value: object, path: str, problems: list[Problem]) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float, e.g. 10**400
            problems.append(Problem(path, "number is too large"))
            return _BAD
    return _expected("a number", value, path, problems)


def _integer(value: object, path: str, problems: list[Problem]) -> Any:
    # bool is an int in Python, but `retries: yes` is a mistake, not 1.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return _expected("an integer", value, path, problems)


def _string_list(if_string: str) -> _Parser:
    """A list-of-strings parser; ``if_string`` is the hint when a lone string is given."""

    def parse(value: object, path: str, problems: list[Problem]) -> Any:
        if not isinstance(value, list | tuple):
            hint = if_string.format(value) if isinstance(value, str) else ""
            return _expected("a list of strings", value, path, problems, hint)
        count = len(problems)
        for i, item in enumerate(value):
            _string(item, f"{path}[{i}]", problems)
        return list(value) if len(problems) == count else _BAD

    return parse


def _variables(value: object, path: str, problems: list[Problem]) -> Any:
    if not isinstance(value, Mapping):
        return _expected("a mapping of names to strings", value, path, problems)
    count = len(problems)
    variables: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            problems.append(Problem(path, f"names must be strings, got {_show(key)}"))
            continue
        at = f"{path}.{key}" if key.isidentifier() else f"{path}[{key!r}]"
        if isinstance(item, bool):
            # YAML 1.1 reads `DEBUG: yes` as true; str() would make it "True", never what was meant.
            hint = " (YAML reads unquoted yes/no/on/off/true/false as booleans: quote the value)"
            _expected("a string", item, at, problems, hint)
        elif isinstance(item, int | float):
            variables[key] = str(item)  # `LEVEL: 3` means the text "3"
        elif isinstance(item, str):
            variables[key] = item
        else:
            _expected("a string", item, at, problems)
    return variables if len(problems) == count else _BAD


def _resources(value: object, path: str, problems: list[Problem]) -> Any:
    count = len(problems)
    fields = _fields(value, path, _RESOURCE_FIELDS, problems, "a mapping with 'cpu', 'memory_mb'")
    return Resources(**fields) if fields is not None and len(problems) == count else _BAD


_RESOURCE_FIELDS: Mapping[str, _Parser] = {"cpu": _number, "memory_mb": _integer}

_SPEC_FIELDS: Mapping[str, _Parser] = {
    "name": _string,
    "command": _string_list(" (to run a shell command line, use 'script')"),
    "script": _string,
    "env": _variables,
    "secrets": _variables,
    "labels": _string_list(" (write [{}])"),
    "resources": _resources,
    "timeout_s": _number,
    "retries": _integer,
    "priority": _integer,
}
_STEP_FIELDS: Mapping[str, _Parser] = {
    **_SPEC_FIELDS,
    "depends_on": _string_list(" (write [{}])"),
}


def _fields(
    value: object,
    path: str,
    allow: Mapping[str, _Parser],
    problems: list[Problem],
    what: str,
) -> dict[str, Any] | None:
    """Parse a mapping whose keys must all be in ``allow``; None if it is not a mapping.

    The result holds only the fields that were present, not null, and well typed; every other
    field has left a problem behind.
    """
    if not isinstance(value, Mapping):
        _expected(what, value, path, problems)
        return None
    parsed: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            problems.append(Problem(path, f"field names must be strings, got {_show(key)}"))
        elif key not in allow:
            close = difflib.get_close_matches(key, allow, n=1, cutoff=0.7)
            guess = f"did you mean {close[0]!r}? " if close else ""
            message = f"unknown field; {guess}allowed: {', '.join(sorted(allow))}"
            problems.append(Problem(_at(path, key), message))
        elif item is not None:
            result = allow[key](item, _at(path, key), problems)
            if result is not _BAD:
                parsed[key] = result
    return parsed


def _require(value: object, key: str, path: str, problems: list[Problem]) -> None:
    if isinstance(value, Mapping) and value.get(key) is None:
        problems.append(Problem(_at(path, key), "required"))


def _step_list(value: object, path: str, problems: list[Problem]) -> Any:
    if isinstance(value, list | tuple):
        return list(value)
    return _expected("a list of steps", value, path, problems)


_PIPELINE_FIELDS: Mapping[str, _Parser] = {"name": _string, "steps": _step_list}


def _is_under(path: str, roots: set[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or inside one (``steps[1].name`` in ``steps[1]``)."""
    if "" in roots or path in roots:  # "" is the whole document
        return True
    return any(path[:i] in roots for i, char in enumerate(path) if char in ".[")


def parse_pipeline_document(doc: object) -> tuple[str, list[Step]]:
    """Turn a pipeline document into its name and steps, or refuse it with every problem.

    Args:
        doc: Parsed JSON or YAML: a mapping with ``name`` and ``steps``, as in the design's
            "Pipeline file".

    Returns:
        The pipeline's name and its steps, each step's spec named after the step.

    Raises:
        PipelineInvalid: With every problem at once: shape and type problems, then (for the
            parts whose types are right) the domain's ones: names, dependencies, cycles, specs.
    """
    problems: list[Problem] = []
    top = _fields(doc, "", _PIPELINE_FIELDS, problems, "a mapping with 'name' and 'steps'")
    _require(doc, "name", "", problems)
    _require(doc, "steps", "", problems)
    top = top or {}
    steps: list[Step] = []
    for i, raw in enumerate(top.get("steps", [])):
        at = f"steps[{i}]"
        count = len(problems)
        fields = _fields(raw, at, _STEP_FIELDS, problems, "a step mapping") or {}
        _require(raw, "name", at, problems)
        name = fields.pop("name", "")
        depends_on = fields.pop("depends_on", [])
        # A step with type problems still takes part in the name and dependency checks, with a
        # stand-in spec whose own checks pass: its real spec problems are already reported.
        spec = JobSpec(name=name, **fields) if len(problems) == count else JobSpec(script=":")
        steps.append(Step(name=name, spec=spec, depends_on=depends_on))
    # Stand-ins ("" for a missing name) would make the domain repeat what a type problem already
    # says, so domain problems at or under an already reported path are dropped.
    reported = {problem.path for problem in problems}
    problems += [
        problem
        for problem in pipeline_problems(top.get("name", ""), steps)
        if not _is_under(problem.path, reported)
    ]
    if problems:
        raise PipelineInvalid(problems)
    return top["name"], steps


def parse_job_spec(doc: object, path: str = "") -> JobSpec:
    """Turn a job document (the fields of a step, without ``depends_on``) into a JobSpec.

    Args:
        doc: Parsed JSON or YAML: a mapping with ``command`` or ``script`` and optional fields.
        path: Where the document sits in a larger one, prefixed to each problem's path.

    Raises:
        JobSpecInvalid: With every type problem, or, if the types are right, every domain one.
    """
    problems: list[Problem] = []
    fields = _fields(doc, path, _SPEC_FIELDS, problems, "a job spec mapping")
    if fields is not None and not problems:
        spec = JobSpec(**fields)
        problems = spec_problems(spec, path)
        if not problems:
            return spec
    raise JobSpecInvalid(problems)


def _construct_mapping(loader: Any, node: Any, deep: bool = False) -> Any:
    # PyYAML keeps the last of two equal keys without a word; a pipeline file that says
    # `script:` twice is a mistake worth a clear error, not a silently dropped command.
    seen: set[object] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges are meant to override
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # unhashable: the base constructor reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                f"found duplicate key {key!r}",
                key_node.start_mark,
            )
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


# Built with type() so that it type-checks with and without the PyYAML stubs installed.
_Loader: Any = type("_Loader", (yaml.SafeLoader,), {"construct_mapping": _construct_mapping})


def load_pipeline_text(text: str, *, filename: str = "<input>") -> tuple[str, list[Step]]:
    """Parse a pipeline file's text (YAML, or JSON, which is YAML too).

    Args:
        text: The file's content.
        filename: How to name the input in a syntax error.

    Raises:
        PipelineInvalid: With one line naming line and column if the text is not valid YAML
            (duplicate keys included), else as ``parse_pipeline_document``.
    """
    try:
        doc = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        # PyYAML splits one sentence in two: "while parsing a flow sequence", "expected ','".
        reason = ", ".join(part for part in (exc.context, exc.problem) if part) or "syntax error"
        message = f"{filename}: not valid YAML: {where}{reason}"
        raise PipelineInvalid([Problem("", message)]) from exc
    except (yaml.YAMLError, ValueError) as exc:
        # ValueError: a scalar PyYAML cannot convert, e.g. a 5000-digit integer or 2024-13-45.
        message = f"{filename}: not valid YAML: {' '.join(str(exc).split())}"
        raise PipelineInvalid([Problem("", message)]) from exc
    except RecursionError as exc:
        raise PipelineInvalid([Problem("", f"{filename}: nested too deeply")]) from exc
    if doc is None:  # an empty file (or only comments) would otherwise read as "got null"
        raise PipelineInvalid([Problem("", f"{filename}: the document is empty")])
    return parse_pipeline_document(doc)


def load_pipeline_file(path: str | os.PathLike[str]) -> tuple[str, list[Step]]:
    """Read and parse a pipeline file.

    Raises:
        PipelineInvalid: If the file cannot be read (``cannot read FILE: reason``), is not
            UTF-8, is not valid YAML, or describes an invalid pipeline.
    """
    filename = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        message = f"cannot read {filename}: not UTF-8 text (byte {exc.start})"
        raise PipelineInvalid([Problem("", message)]) from exc
    except OSError as exc:
        message = f"cannot read {filename}: {exc.strerror or exc}"
        raise PipelineInvalid([Problem("", message)]) from exc
    return load_pipeline_text(text, filename=filename)
