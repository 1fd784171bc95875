"""``hodei run`` of a 3-step pipeline of ``true``: wall time including start-up (< 1 s)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._common import Result, repeat

PIPELINE = """\
name: three-trues
steps:
  - {name: one, command: ["true"]}
  - {name: two, command: ["true"], depends_on: [one]}
  - {name: three, command: ["true"], depends_on: [two]}
"""


def run(repeats: int = 7) -> list[Result]:
    """The figures of this benchmark."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "three.yaml"
        path.write_text(PIPELINE)
        argv = [sys.executable, "-m", "hodei_backends._cli", "run", "--no-progress", str(path)]

        def once() -> dict[str, float]:
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            return {"wall": time.perf_counter() - t0}

        values = repeat(repeats, once)
    return [Result("hodei run: 3 steps of true, wall time", values["wall"], "s", 1.0, False)]
