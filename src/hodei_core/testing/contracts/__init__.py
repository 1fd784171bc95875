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

Capabilities: some adapters promise more than the contract. A store test class claims such a
promise by including its suite next to ``StoreContract``; the suite sets the matching class
attribute and brings the tests that check it:

- ``DurableStoreContract`` (``durable``): what the store wrote is there again after it is
  closed and opened again on the same location;
- ``CrossProcessStoreContract`` (``cross_process``): stores opened on one location at once
  share one state; assignments, capacity and updates hold across them. The suite opens them in
  its own process; whether separate processes do is for the adapter's own tests.

Their tests open stores themselves, through an ``open_store`` fixture: a function that opens
another store on the test's location (fresh and empty when the test starts) each time it is
called, as an async context manager (``StoreOpener``). The ``store`` fixture can be built on
it::

    class TestFileStore(StoreContract, DurableStoreContract, CrossProcessStoreContract):
        @pytest.fixture
        def open_store(self, tmp_path: Path) -> StoreOpener:
            url = f"myscheme:///{tmp_path / 'state'}"
            return lambda: open_my_store(url)

        @pytest.fixture
        async def store(self, open_store: StoreOpener) -> AsyncIterator[Store]:
            async with open_store() as store:
                yield store

The tests of a capability an adapter does not claim are not in its class at all, so they are
neither run nor reported as skipped. Setting ``durable`` or ``cross_process`` by hand on a
``StoreContract`` subclass, without its suite, raises ``TypeError`` when the class is defined:
the claim would go unchecked.

``EventBusContract`` has the same two attributes. A bus whose events reach other processes
includes ``CrossProcessBusContract`` (``cross_process``) and provides an ``open_bus`` fixture
(``BusOpener``) as stores do ``open_store``; ``durable`` (a bus that keeps events for absent
subscribers) is informative: no test uses it.
"""

from ._bus import MIN_BUFFERED_EVENTS, RECEIVE_TIMEOUT_S, EventBusContract
from ._bus_shared import BusOpener, CrossProcessBusContract
from ._store import StoreContract
from ._store_durable import DurableStoreContract
from ._store_shared import CrossProcessStoreContract
from ._support import StoreOpener

__all__ = [
    "BusOpener",
    "CrossProcessBusContract",
    "CrossProcessStoreContract",
    "DurableStoreContract",
    "EventBusContract",
    "MIN_BUFFERED_EVENTS",
    "RECEIVE_TIMEOUT_S",
    "StoreContract",
    "StoreOpener",
]
