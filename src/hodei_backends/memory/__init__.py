"""In-memory adapters: one process, nothing durable. For tests and embedding."""

from ._bus import MemoryEventBus
from ._store import MemoryStore

__all__ = ["MemoryEventBus", "MemoryStore"]
