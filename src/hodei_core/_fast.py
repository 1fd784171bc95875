"""Written-out constructors for the frozen values made on every job's way through the engine.

A frozen attrs class's ``__init__`` sets each field through ``object.__setattr__`` (the class
forbids plain assignment), which costs about three times a plain slot assignment. The events
published on every move of every job are made with ``constructor(cls)`` instead: a function,
written out once per class, that sets the slots directly. The values are the same: only
classes whose fields are plain (no converter, validator or post-init step) are accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs

__all__ = ["constructor"]

T = TypeVar("T")


def constructor(cls: type[T]) -> Callable[..., T]:
    """A function ``(*values)`` that makes ``cls(*values)``: every field, in order.

    Raises:
        TypeError: ``cls`` is not a slotted attrs class of plain fields.
    """
    if not attrs.has(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a slotted attrs class")
    fields = attrs.fields(cls)
    if hasattr(cls, "__attrs_post_init__") or any(
        not f.init or f.alias != f.name or f.validator is not None or f.converter is not None
        for f in fields
    ):
        raise TypeError(f"{cls.__name__} has fields that are not plain")
    names = [f.name for f in fields]
    # The text is built from the class's own field names only.
    lines = [f"def make({', '.join(names)}):", "    obj = new(cls)"]
    lines += [f"    set_{name}(obj, {name})" for name in names]
    lines.append("    return obj")
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls}
    namespace.update({f"set_{name}": getattr(cls, name).__set__ for name in names})
    exec("\n".join(lines), namespace)
    make: Callable[..., T] = namespace["make"]
    return make
