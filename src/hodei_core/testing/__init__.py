"""Aids for testing with Hodei, and for testing what you plug into it.

- ``CallableExecutor`` and ``ManualExecutor`` run jobs as Python, without processes.
- ``check_scheduling_policy`` checks a scheduling policy keeps the rules.
- ``trio_wall_clock`` makes timestamps follow trio's (possibly jumping) clock.
- ``hodei_core.testing.contracts`` holds the contract suites every Store and EventBus passes.
"""

from ._clock import trio_wall_clock
from ._executors import CallableExecutor, ManualExecutor
from ._policy_check import check_scheduling_policy

__all__ = ["CallableExecutor", "ManualExecutor", "check_scheduling_policy", "trio_wall_clock"]
