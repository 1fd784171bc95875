"""``StoreContract``: the tests every ``Store`` adapter must pass, one mixin per subject."""

from __future__ import annotations

from typing import Any

from ._store_assignment import AssignmentContract
from ._store_durable import DurableStoreContract
from ._store_jobs import JobsContract
from ._store_refusals import RefusalsContract
from ._store_runs_logs import PipelinesRunsLogsContract
from ._store_shared import CrossProcessStoreContract
from ._store_workers import WorkersContract
from ._support import _StoreCapabilities


# pytest collects the tests of base classes last base first; listing the subjects backwards
# keeps the run order: jobs, assignment, workers, pipelines, runs and logs, then refusals.
class StoreContract(
    RefusalsContract,
    PipelinesRunsLogsContract,
    WorkersContract,
    AssignmentContract,
    JobsContract,
    _StoreCapabilities,
):
    """The tests every ``hodei_core.ports.Store`` adapter must pass.

    Subclass it in a ``Test*`` class and provide a ``store`` fixture that yields a fresh, empty
    store for each test (see the module docstring). An adapter with a capability includes its
    suite as well (``DurableStoreContract``, ``CrossProcessStoreContract``), which sets the
    attribute below.

    Attributes:
        durable: the adapter keeps its data when closed and opened again.
        cross_process: several processes may share one store (e.g. one database).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Setting the attribute alone used to be how a test class claimed a capability, and
        # nothing then checked it: refuse a claim whose tests would not run.
        for name, suite in (
            ("durable", DurableStoreContract),
            ("cross_process", CrossProcessStoreContract),
        ):
            claimed, included = getattr(cls, name), issubclass(cls, suite)
            if claimed != included:
                raise TypeError(
                    f"{cls.__qualname__} sets {name} = {claimed} but"
                    f" {'includes' if included else 'does not include'} {suite.__name__}: a"
                    " store test class claims a capability by including its suite (which sets"
                    " the attribute, and needs an open_store fixture), not by the attribute"
                )
