"""A wall clock that follows trio's clock, so timestamps move with ``autojump_clock``."""

from __future__ import annotations

import trio

__all__ = ["trio_wall_clock"]


def trio_wall_clock(epoch: float = 1_800_000_000.0) -> float:
    """``epoch`` plus trio's current time: pass as ``clock=`` in tests that jump time."""
    return epoch + trio.current_time()
