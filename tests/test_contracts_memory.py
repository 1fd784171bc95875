"""The memory adapters against the contract suites every Store and EventBus adapter passes."""

from __future__ import annotations

import sys

import pytest

# The suites live in the library, which pytest does not rewrite: without this, a failing
# contract shows a bare AssertionError instead of the values compared. Registering the package
# covers every module inside it. Skipped when the package is already imported (pytest would
# warn, and warnings are errors here).
if "hodei_core.testing.contracts" not in sys.modules:
    pytest.register_assert_rewrite("hodei_core.testing.contracts")

from hodei_backends.memory import MemoryEventBus, MemoryStore
from hodei_core.testing.contracts import EventBusContract, StoreContract


class TestMemoryStore(StoreContract):
    """``MemoryStore`` keeps the ``Store`` contract."""

    @pytest.fixture
    def store(self) -> MemoryStore:
        """A fresh, empty store for each test."""
        return MemoryStore()


class TestMemoryEventBus(EventBusContract):
    """``MemoryEventBus`` keeps the ``EventBus`` contract."""

    @pytest.fixture
    def bus(self) -> MemoryEventBus:
        """A fresh bus for each test."""
        return MemoryEventBus()
