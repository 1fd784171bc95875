"""The HWP agent: a worker that takes jobs from a Hodei server over HTTP and runs them as local
processes. A thin assembly: ``HttpControlPlane`` (the ``ControlPlane`` port over httpx) with the
worker loop of ``hodei_core`` and the ``SubprocessExecutor`` of ``hodei_backends``, run by
``run_agent`` (or ``hodei agent``).

Names are loaded on first use, so that ``hodei_agent._cli`` (which the ``hodei`` command loads
for every subcommand) does not import httpx and trio with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._agent import run_agent
    from ._control_plane import HttpControlPlane
    from ._settings import AgentSettings

__all__ = ["AgentSettings", "HttpControlPlane", "run_agent"]

_WHERE = {
    "AgentSettings": "._settings",
    "HttpControlPlane": "._control_plane",
    "run_agent": "._agent",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
