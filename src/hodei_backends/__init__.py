"""Adapters for the ports of ``hodei_core``, and the ways to open them by URL.

``open_embedded`` runs the whole engine with in-process workers; ``open_store`` and
``open_bus`` open an adapter from a URL (``memory://`` here; SQL and NATS adapters register
their own schemes).
"""

from ._embedded import open_embedded
from ._registry import UnknownScheme, open_bus, open_store, redact_url, register_bus, register_store
from ._subprocess import SubprocessExecutor
from .memory import MemoryEventBus, MemoryStore

__all__ = [
    "MemoryEventBus",
    "MemoryStore",
    "SubprocessExecutor",
    "UnknownScheme",
    "open_bus",
    "open_embedded",
    "open_store",
    "redact_url",
    "register_bus",
    "register_store",
]
