"""``python -m bench [NAME…]``: run the benchmarks (all by default) and check their targets."""

from __future__ import annotations

import importlib
import sys

from ._common import report

BENCHES = [
    "engine_throughput",
    "hodei_run",
    "memory_footprint",
    "sql_throughput",
    "http_dispatch",
    "http_longpoll",
]


def main(names: list[str]) -> int:
    ok = True
    for name in names or BENCHES:
        module = importlib.import_module(f"bench.{name}")
        print(f"# {name}: {module.__doc__.strip().splitlines()[0]}")
        ok = report(module.run()) and ok
    return 0 if ok else 1


sys.exit(main(sys.argv[1:]))
