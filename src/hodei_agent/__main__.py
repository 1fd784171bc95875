"""``python -m hodei_agent``: ``hodei agent`` without the ``hodei`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._cli import HELP, command


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hodei agent`` with ``argv`` (default: the command line); returns the exit status."""
    parser = argparse.ArgumentParser(prog="hodei agent", description=HELP)
    handler = command(parser)
    return handler(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
