"""Public names loaded on first use, for package ``__init__`` modules that must stay light.

``hodei`` loads every subcommand's module at start, so a package whose public names pull in
Starlette, hypercorn or httpx exports them lazily. (``hodei_agent`` keeps its own copy of these
few lines: it may not depend on ``hodei_http``, and ``hodei_core`` would bring trio along.)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, where: Mapping[str, str], exported: Iterable[str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``: each name in ``where`` is
    imported from its (relative) module the first time it is asked for, then kept in
    ``namespace`` (the package's globals)."""

    def getattr_(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *exported})

    return getattr_, dir_
