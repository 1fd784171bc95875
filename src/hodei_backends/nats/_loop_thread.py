"""An asyncio event loop in a daemon thread, as trio sees it: start it, run coroutines on it
and wait for them without blocking trio, call back into trio from it, and stop it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import trio

__all__ = ["_LoopThread"]

logger = logging.getLogger("hodei.nats")

T = TypeVar("T")


class _LoopThread:
    """A private asyncio loop running in a daemon thread of its own, driven from trio.

    Args:
        name: the thread's name.
        finalize: awaited on the loop once it has stopped and its leftover tasks are
            cancelled, to release what they could not (e.g. a connection made meanwhile).
    """

    def __init__(self, name: str, finalize: Callable[[], Awaitable[None]]) -> None:
        self._finalize = finalize
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        # Both made by start(): an event loop that never runs would leak its selector.
        self.loop: asyncio.AbstractEventLoop
        self._token: trio.lowlevel.TrioToken

    def start(self) -> None:
        """Start the loop's thread; call from trio, which the loop then calls back into."""
        self._token = trio.lowlevel.current_trio_token()
        self.loop = asyncio.new_event_loop()
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the thread runs (started and not yet stopped)."""
        return self._thread.is_alive()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and return its result, without blocking trio.

        If trio is cancelled meanwhile, ``coro`` goes on regardless: callers make their
        coroutines safe to finish unobserved.
        """
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        done = trio.Event()
        future.add_done_callback(lambda _: self.to_trio(done.set))
        await done.wait()
        return future.result()

    def call_soon(self, fn: Callable[[], object]) -> None:
        """Have the loop call ``fn`` soon; from trio, never waits."""
        self.loop.call_soon_threadsafe(fn)

    def to_trio(self, fn: Callable[..., object], *args: object) -> None:
        """Have trio call ``fn(*args)`` soon; from the loop thread, never waits."""
        # When trio is gone, so is whoever would have received this.
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn, *args)

    async def stop(self) -> None:
        """Stop the loop and wait for its thread to end (abandoned if trio is cancelled)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed already
            self.loop.call_soon_threadsafe(self.loop.stop)
        await trio.to_thread.run_sync(self._thread.join, abandon_on_cancel=True)

    def _main(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # Whatever is left (tasks of the driver, a pending reconnect) ends here, so that
            # the loop closes without "task was destroyed but it is pending" complaints.
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(self._finalize())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        except Exception:  # a thread has nobody to raise to
            logger.exception("the NATS event loop failed")
        finally:
            loop.close()
