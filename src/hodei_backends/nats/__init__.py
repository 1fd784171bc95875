"""The NATS event bus: events between processes, ``open_bus("nats://host:4222")``.

Needs the ``nats`` extra (``pip install 'hodei-pipelines[nats]'``). nats-py is asyncio-only;
it runs on its own event loop in a dedicated thread, and this package is the only place that
knows.
"""

from ._bus import NatsEventBus, open_nats_bus

__all__ = ["NatsEventBus", "open_nats_bus"]
