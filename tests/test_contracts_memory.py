"""The memory adapters against the contract suites every Store and EventBus adapter passes,
and the capability and refusal suites against memory stores that keep or break their promise
(a test of the suites themselves: each must be able to fail)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

# The suites live in the library, which pytest does not rewrite: without this, a failing
# contract shows a bare AssertionError instead of the values compared. Registering the package
# covers every module inside it. Skipped when the package is already imported (pytest would
# warn, and warnings are errors here).
if "hodei_core.testing.contracts" not in sys.modules:
    pytest.register_assert_rewrite("hodei_core.testing.contracts")

from hodei_backends.memory import MemoryEventBus, MemoryStore
from hodei_core import Job, LogChunk, Worker
from hodei_core.errors import Conflict, HodeiError, StorageError
from hodei_core.testing.contracts import (
    BusOpener,
    CrossProcessBusContract,
    CrossProcessStoreContract,
    DurableStoreContract,
    EventBusContract,
    StoreContract,
    StoreOpener,
)
from hodei_core.testing.contracts._store_refusals import RefusalsContract


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


# -- the suites themselves ----------------------------------------------------------------------


def _tests_of(suite: type) -> list[str]:
    return sorted(name for name in vars(suite) if name.startswith("test_"))


def _one_store_for_all() -> StoreOpener:
    """Every open gives the same memory store: what a durable, shared store looks like from
    inside one process."""
    store = MemoryStore()

    @asynccontextmanager
    async def open_store() -> AsyncIterator[MemoryStore]:
        yield store

    return open_store


def _a_new_store_each_time() -> StoreOpener:
    """Every open gives a new, empty memory store: neither durable nor shared."""

    @asynccontextmanager
    async def open_store() -> AsyncIterator[MemoryStore]:
        yield MemoryStore()

    return open_store


def _only_failures(error: BaseException, *kinds: type[Exception]) -> bool:
    """Whether ``error`` is, or groups only, exceptions of ``kinds`` (a test's failure, not
    a bug of the suite such as a TypeError)."""
    if isinstance(error, BaseExceptionGroup):
        _, rest = error.split(kinds)
        return rest is None
    return isinstance(error, kinds)


CAPABILITY_TESTS = [
    (suite, name)
    for suite in (DurableStoreContract, CrossProcessStoreContract)
    for name in _tests_of(suite)
]


@pytest.mark.parametrize(("suite", "name"), CAPABILITY_TESTS)
async def test_capability_suites_pass_on_a_store_that_keeps_the_promise(
    suite: type, name: str
) -> None:
    """Handing out one memory store for every open keeps both promises within a process:
    the suites ask for nothing beyond them."""
    await getattr(suite(), name)(_one_store_for_all())


@pytest.mark.parametrize(("suite", "name"), CAPABILITY_TESTS)
async def test_capability_suites_fail_on_a_store_that_breaks_the_promise(
    suite: type, name: str
) -> None:
    """Each capability test fails on stores that share nothing, not even with their next
    opening: it checks what it claims to."""
    with pytest.raises(BaseException) as caught:
        await getattr(suite(), name)(_a_new_store_each_time())
    assert _only_failures(caught.value, AssertionError, HodeiError), caught.value


class _WrappingStore(MemoryStore):
    """A store that breaks the contract as a careless driver boundary would: what a change
    function refused comes out as a ``StorageError``."""

    async def update_job(
        self, job_id: str, change: Callable[[Job], Job], chunks: Sequence[LogChunk] = ()
    ) -> tuple[Job, Job]:
        try:
            return await super().update_job(job_id, change, chunks)
        except Conflict as error:
            raise StorageError(f"update_job {job_id}") from error

    async def update_worker(
        self, worker_id: str, change: Callable[[Worker], Worker]
    ) -> tuple[Worker, Worker]:
        try:
            return await super().update_worker(worker_id, change)
        except Conflict as error:
            raise StorageError(f"update_worker {worker_id}") from error


@pytest.mark.parametrize("name", _tests_of(RefusalsContract))
async def test_refusal_tests_fail_on_a_store_that_wraps_domain_errors(name: str) -> None:
    """Each refusal test fails on a store whose refusals come out as ``StorageError``."""
    with pytest.raises(BaseException) as caught:
        await getattr(RefusalsContract(), name)(_WrappingStore())
    assert _only_failures(caught.value, StorageError), caught.value


def test_a_capability_is_claimed_by_including_its_suite() -> None:
    """The capability attributes follow the suites a class includes, in either order; set by
    hand against them, the class is refused when defined, since its claim would go
    unchecked."""

    class Both(CrossProcessStoreContract, StoreContract, DurableStoreContract):
        pass

    class Neither(StoreContract):
        pass

    assert (Both.durable, Both.cross_process) == (True, True)
    assert (Neither.durable, Neither.cross_process) == (False, False)
    assert (TestMemoryStore.durable, TestMemoryStore.cross_process) == (False, False)
    with pytest.raises(TypeError, match="does not include DurableStoreContract"):

        class ClaimsDurable(StoreContract):
            durable = True

    with pytest.raises(TypeError, match="includes CrossProcessStoreContract"):

        class Disowns(StoreContract, CrossProcessStoreContract):
            cross_process = False


def _one_bus_for_all() -> BusOpener:
    """Every open gives the same memory bus: its subscribers hear every publisher."""
    bus = MemoryEventBus()

    @asynccontextmanager
    async def open_bus() -> AsyncIterator[MemoryEventBus]:
        yield bus

    return open_bus


def _a_new_bus_each_time() -> BusOpener:
    """Every open gives a bus of its own: what one publishes, the others never hear."""

    @asynccontextmanager
    async def open_bus() -> AsyncIterator[MemoryEventBus]:
        yield MemoryEventBus()

    return open_bus


BUS_TESTS = _tests_of(CrossProcessBusContract)


@pytest.mark.parametrize("name", BUS_TESTS)
async def test_the_cross_process_bus_suite_passes_on_a_shared_bus(name: str) -> None:
    await getattr(CrossProcessBusContract(), name)(_one_bus_for_all())


@pytest.mark.parametrize("name", BUS_TESTS)
async def test_the_cross_process_bus_suite_fails_on_buses_that_share_nothing(
    name: str, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(BaseException) as caught:
        await getattr(CrossProcessBusContract(), name)(_a_new_bus_each_time())
    assert _only_failures(caught.value, AssertionError, trio.TooSlowError), caught.value


def test_a_bus_claims_cross_process_by_including_its_suite() -> None:
    class Shared(EventBusContract, CrossProcessBusContract):
        pass

    assert (Shared.cross_process, TestMemoryEventBus.cross_process) == (True, False)
    with pytest.raises(TypeError, match="does not include CrossProcessBusContract"):

        class Claims(EventBusContract):
            cross_process = True
