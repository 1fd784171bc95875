"""The package's shape: a sorted public API, and a command module that stays light."""

from __future__ import annotations

import subprocess
import sys

import hodei_http


def test_public_api_is_sorted_and_complete() -> None:
    assert hodei_http.__all__ == sorted(hodei_http.__all__)
    for name in hodei_http.__all__:
        assert getattr(hodei_http, name) is not None
    assert set(hodei_http.__all__) <= set(dir(hodei_http))


def test_the_command_module_does_not_load_the_server() -> None:
    # the `hodei` command loads every subcommand's module to build its parser
    code = (
        "import sys, hodei_http._cli\n"
        "heavy = {'starlette', 'hypercorn', 'httpx', 'cattrs', 'trio'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
