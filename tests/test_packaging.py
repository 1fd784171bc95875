"""The shape of the packages: import hygiene and the public API."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PUBLIC_MODULES = [
    "hodei_core",
    "hodei_core.errors",
    "hodei_core.events",
    "hodei_core.policies",
    "hodei_core.ports",
    "hodei_core.testing",
    "hodei_core.worker",
    "hodei_backends",
    "hodei_backends.memory",
    "hodei_backends.nats",
    "hodei_backends.sql",
    "hodei_agent",
    "hodei_http",
]


def test_importing_the_core_loads_no_backend_library() -> None:
    code = (
        "import sys, hodei_core, hodei_core.policies, hodei_core.ports, hodei_core.worker\n"
        "heavy = {'sqlalchemy', 'nats', 'httpx', 'cattrs', 'starlette', 'hypercorn', 'yaml'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_api_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    for item in exported:
        assert hasattr(module, item), f"{name}.__all__ names {item}, which is missing"
        assert not item.startswith("_")
