"""Contract suites that every ``Store`` and every ``EventBus`` adapter must pass.

The docstrings of ``hodei_core.ports.Store`` and ``hodei_core.ports.EventBus`` are the contracts;
the classes here turn each sentence of them into tests, so that the in-memory fakes cannot drift
from SQLite, PostgreSQL or NATS: all of them run this very suite.

The suites are plain classes (this package must not import pytest: ``hodei_core`` does not
depend on it). Their methods are ``async def test_*(self, store)`` or ``(self, bus)``, so pytest
(with pytest-trio in ``trio_mode``) collects them as soon as a ``Test*`` class inherits them and
a ``store`` or ``bus`` fixture exists::

    import pytest

    from hodei_backends.memory import MemoryEventBus, MemoryStore
    from hodei_core.testing.contracts import EventBusContract, StoreContract


    class TestMemoryStore(StoreContract):
        @pytest.fixture
        def store(self) -> MemoryStore:
            return MemoryStore()


    class TestMemoryEventBus(EventBusContract):
        @pytest.fixture
        def bus(self) -> MemoryEventBus:
            return MemoryEventBus()

The fixture may also be an async generator fixture that opens and closes a real adapter (a
database file, a NATS connection). Each test needs a **fresh, empty** store (the suite counts
what it lists); a bus may be shared between tests as long as no other publisher uses it.

pytest only shows the values of a failed ``assert`` in modules it rewrites, and it does not
rewrite installed libraries. For readable failures, register this package (which covers the
modules inside it) in ``conftest.py`` before anything imports it::

    pytest.register_assert_rewrite("hodei_core.testing.contracts")

Capabilities: a subclass may declare what its adapter offers beyond the contract by setting
class attributes, so that the tests which need a capability can skip themselves (they return
early) for adapters that do not claim it:

- ``durable``: the store keeps its data after it is closed and opened again;
- ``cross_process``: several processes share the state (store) or the events (bus).

No test in this version of the suite needs either: every test here holds for every adapter.
"""

from ._bus import MIN_BUFFERED_EVENTS, RECEIVE_TIMEOUT_S, EventBusContract
from ._store import StoreContract

__all__ = ["EventBusContract", "MIN_BUFFERED_EVENTS", "RECEIVE_TIMEOUT_S", "StoreContract"]
