"""``StoreContract``: the tests every ``Store`` adapter must pass, one mixin per subject."""

from __future__ import annotations

from ._store_assignment import AssignmentContract
from ._store_jobs import JobsContract
from ._store_runs_logs import PipelinesRunsLogsContract
from ._store_workers import WorkersContract


# pytest collects the tests of base classes last base first; listing the subjects backwards
# keeps the run order: jobs, assignment, workers, then pipelines, runs and logs.
class StoreContract(PipelinesRunsLogsContract, WorkersContract, AssignmentContract, JobsContract):
    """The tests every ``hodei_core.ports.Store`` adapter must pass.

    Subclass it in a ``Test*`` class and provide a ``store`` fixture that yields a fresh, empty
    store for each test (see the module docstring).

    Attributes:
        durable: the adapter keeps its data when closed and opened again.
        cross_process: several processes may share one store (e.g. one database).
    """

    durable: bool = False
    cross_process: bool = False
