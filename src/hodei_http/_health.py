"""Whether the event bus is up, as ``/readyz`` and ``/metrics`` report it, without naming any
backend."""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

from hodei_core.ports import EventBus

__all__ = ["HealthReporting", "bus_state"]


@runtime_checkable
class HealthReporting(Protocol):
    """An adapter that can tell whether its connection is up right now (``NatsEventBus``).

    Structural: a third-party bus only needs the property, not this class. It must be cheap
    and must not raise: it is read on every ``/readyz`` and ``/metrics`` request.
    """

    @property
    def healthy(self) -> bool:
        """Whether the connection is up now."""


def bus_state(bus: EventBus) -> Literal["up", "down"]:
    """``up`` or ``down``. A bus that cannot tell lives in this process (the memory bus), so it
    is up while the process is.

    A bus that is down does not make the server unready: DESIGN §3 has every consumer recover
    by reading the store, so the engine works on, only with more latency.
    """
    if isinstance(bus, HealthReporting) and not bus.healthy:
        return "down"
    return "up"
