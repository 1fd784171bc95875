"""``serve``: the composition root of the stock server. Opens the store and the bus, builds the
engine and the app, and serves them on hypercorn's trio worker until cancelled or signalled."""

from __future__ import annotations

import contextlib
import gc
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from functools import partial
from typing import Any, TextIO, cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve

from hodei_backends import open_bus, open_store, redact_url
from hodei_core import Hodei

from ._app import create_app
from ._settings import ServerSettings

__all__ = ["collector_tuned_for_serving", "serve"]

# Open requests get this long to finish after SIGTERM; long-polls and SSE streams are cut then.
_GRACE_S = 5.0
# Young collections between two full ones (CPython's default is 10); see the function below.
_YOUNG_PER_FULL_COLLECTION = 1000


@contextlib.contextmanager
def collector_tuned_for_serving() -> Iterator[None]:
    """Make the cyclic garbage collector's full collections rare while the server runs; the
    collector is as it was afterwards.

    With a fleet connected, the heap holds hundreds of thousands of objects: every agent's
    connections and every waiting long-poll's request, tasks and cancel scopes. CPython
    collects the whole heap after every ten young collections, which under 1,000 polling
    agents came every ~3 s, each ~0.5 s of CPU on a small machine (a fifth of the server's
    CPU), during which no request is answered, and each found next to nothing to free: the
    server's objects are freed by reference counting, not by the collector. So what exists
    before serving (modules, classes, settings) is moved out of the collector's sight
    (``gc.freeze``), and a full collection comes after 1,000 young ones instead of 10 (every
    few minutes under that load). Young collections are unchanged: they are short, and they
    still free reference cycles as they come.
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(thresholds[0], thresholds[1], _YOUNG_PER_FULL_COLLECTION)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _listen(settings: ServerSettings) -> int:
    """A listening socket's file descriptor, for hypercorn to take over.

    Bound here rather than by hypercorn, which leaks its socket when the address is taken;
    ``create_server`` closes it, and the ``OSError`` says what went wrong.
    """
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.create_server((settings.host.strip("[]"), settings.port), family=family)
    return sock.detach()


def _hypercorn_config(settings: ServerSettings) -> Config:
    config = Config()
    config.bind = [f"fd://{_listen(settings)}"]
    config.graceful_timeout = _GRACE_S
    config.accesslog = None  # one line per long-poll of every agent would drown everything
    # hypercorn's own limit guards the header block; the body limit is the app's (413)
    config.keep_alive_timeout = 75.0  # longer than any long-poll, so agents keep connections
    # Connections the kernel completes before the server accepts them (hypercorn's default is
    # 100; the kernel caps it at net.core.somaxconn). A fleet of agents reconnecting at once,
    # or heartbeating while the server is busy, overflows a short queue: the kernel drops
    # their handshakes, and the agent sees a connection reset or a retry a second later.
    config.backlog = 4096
    return config


async def _until_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            stop.set()
            return


async def serve(
    settings: ServerSettings,
    *,
    out: TextIO | None = None,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the HTTP API until cancelled, or until SIGINT/SIGTERM (with ``handle_signals``, in
    the main thread), which stop it gracefully: no new connections, open requests get a few
    seconds to finish.

    Prints the URL and any generated tokens to ``out`` (standard output by default), then
    reports the URL it listens on (with the real port when ``settings.port`` is 0) through
    ``task_status``.

    Raises:
        UnknownScheme: the store or bus URL names no known adapter.
        OSError: the address cannot be listened on.
    """
    async with open_store(settings.store) as store, open_bus(settings.bus) as bus:
        hodei = Hodei(
            store=store,
            bus=bus,
            quotas=settings.quotas,
            lost_after_s=settings.lost_after_s,
        )
        app = create_app(hodei, settings)
        stop = trio.Event()
        async with trio.open_nursery() as engine:
            await engine.start(hodei.run)
            if handle_signals and threading.current_thread() is threading.main_thread():
                engine.start_soon(_until_signal, stop)
            async with trio.open_nursery() as http:
                # hypercorn returns once `stop` is set and open requests have finished
                binds = await http.start(
                    partial(
                        hypercorn_serve,
                        cast(
                            Any, app
                        ),  # a Starlette app is an ASGI app; hypercorn's types are narrow
                        _hypercorn_config(settings),
                        shutdown_trigger=stop.wait,
                    )
                )
                url = binds[0] if binds else settings.url
                _announce(settings, url, out or sys.stdout)
                task_status.started(url)
            engine.cancel_scope.cancel()


def _announce(settings: ServerSettings, url: str, out: TextIO) -> None:
    print(
        f"hodei server listening on {url} "
        f"(store {redact_url(settings.store)}, bus {redact_url(settings.bus)})",
        file=out,
    )
    if settings.generated_tokens:
        print("generated tokens (configure your own to keep them across restarts):", file=out)
        for what, token in settings.generated_tokens:
            print(f"  {what}: {token}", file=out)
    out.flush()
