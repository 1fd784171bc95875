"""The worker side: the loop every worker runs, and the in-process control plane."""

from ._control_plane import InProcessControlPlane
from ._masking import MASK, SecretMasker
from ._worker_loop import WorkerLoop, WorkerSettings

__all__ = ["InProcessControlPlane", "MASK", "SecretMasker", "WorkerLoop", "WorkerSettings"]
