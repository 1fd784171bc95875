"""``run_agent``: the composition root of the HWP agent. The HTTP control plane, the worker loop
of ``hodei_core`` and the subprocess executor of ``hodei_backends``, and the signals.

The first SIGTERM or SIGINT drains: the server is asked to give the worker no new job, the
running jobs finish and are reported, the worker leaves, ``run_agent`` returns. A second one
stops at once: the jobs are killed (the executor's cancellation takes down each job's whole
process group) and the worker leaves without waiting for what it had left to send.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading

import attrs
import trio

from hodei_backends import SubprocessExecutor
from hodei_core import Capacity, Worker, WorkerRegistration
from hodei_core.worker import WorkerLoop, WorkerSettings

from ._answers import agent_version
from ._control_plane import HttpControlPlane
from ._settings import AgentSettings
from ._wire import Registered

__all__ = ["run_agent"]

log = logging.getLogger("hodei.agent")

# What the agent waits, when stopping, for a server that does not answer.
_DRAIN_REQUEST_S = 5.0
_LEAVE_NOW_S = 2.0


def _pace(loop: WorkerLoop, settings: AgentSettings, registered: Registered) -> None:
    """Adopt the pace the server asks for, unless the settings say otherwise."""
    loop.settings = attrs.evolve(
        loop.settings,
        heartbeat_interval_s=settings.heartbeat_s or registered.heartbeat_interval_s,
        pinned_heartbeat=settings.heartbeat_s is not None,
        poll_timeout_s=settings.poll_wait_s or registered.poll_wait_s,
    )


async def _drain(loop: WorkerLoop, control: HttpControlPlane) -> None:
    # The server first, so that it assigns nothing more that the loop would then refuse
    # (a job assigned to a worker that leaves counts as lost); its answer to the poll
    # says drain. The loop's own drain covers a server that cannot be told.
    with trio.move_on_after(_DRAIN_REQUEST_S):
        await control.request_drain()
    loop.drain()
    control.interrupt_poll()


class _Signals:
    """SIGTERM/SIGINT: the first drains, the second stops at once (and so does the first
    before the worker has registered: there is nothing to drain yet)."""

    def __init__(self, loop: WorkerLoop, control: HttpControlPlane) -> None:
        self._loop = loop
        self._control = control
        self.received = 0
        #: the agent was told to stop at once
        self.stopped = False

    async def watch(self, work: trio.CancelScope) -> None:
        # trio delivers a signal that arrives again before it was read only once: a second
        # one counts once the first has been seen
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                async for signum in signals:
                    self.received += 1
                    name = signal.Signals(signum).name
                    if self.received == 1 and self._control.registered is not None:
                        log.warning("%s: draining; send it again to stop at once", name)
                        nursery.start_soon(_drain, self._loop, self._control)
                    else:
                        log.warning("%s: stopping at once", name)
                        self.stopped = True
                        work.cancel()
                        return


async def _run_loop(
    loop: WorkerLoop, then: trio.CancelScope, *, task_status: trio.TaskStatus[Worker]
) -> None:
    await loop.run(task_status=task_status)
    then.cancel()  # drained and left: nothing more to watch


async def run_agent(
    settings: AgentSettings,
    *,
    handle_signals: bool = True,
    task_status: trio.TaskStatus[Worker] = trio.TASK_STATUS_IGNORED,
) -> bool:
    """Run the agent until it is drained (by the server, or by SIGTERM/SIGINT when
    ``handle_signals`` and in the main thread) or cancelled.

    Reports the worker (``hodei_core.Worker``) through ``task_status`` once registered.

    Returns:
        True when it drained and left; False when a second signal stopped it at once.

    Raises:
        Refused: the server refused the agent token or the registration.
    """
    executor = SubprocessExecutor(grace_s=settings.grace_s)
    registration = WorkerRegistration(
        name=settings.name,
        labels=settings.labels,
        capacity=Capacity(slots=settings.slots),
        version=agent_version(),
        hostname=socket.gethostname(),
    )
    control = HttpControlPlane(
        settings.server,
        settings.token,
        backoff_base_s=settings.backoff_base_s,
        backoff_cap_s=settings.backoff_cap_s,
        outbox_bytes=settings.outbox_bytes,
    )
    async with control:
        # The process starts while the start report travels: a round trip sooner on every
        # job. The executor already sends each stream's output in batches of up to 100 ms: a
        # second 100 ms wait in the loop would double the lag of a live log, so the loop only
        # gathers what comes together (several jobs', both streams) into one report.
        worker_settings = WorkerSettings(start_alongside=True, log_flush_interval_s=0.02)
        loop = WorkerLoop(control, executor, registration, settings=worker_settings)
        control.session.on_registered = lambda registered: _pace(loop, settings, registered)
        signals = _Signals(loop, control)
        with trio.CancelScope() as work:
            async with trio.open_nursery() as nursery:
                if handle_signals and threading.current_thread() is threading.main_thread():
                    nursery.start_soon(signals.watch, work)
                worker = await nursery.start(_run_loop, loop, nursery.cancel_scope)
                task_status.started(worker)
        if not signals.stopped:
            return True
        # the jobs are dead: let the server requeue them now rather than after lost_after_s
        with trio.move_on_after(_LEAVE_NOW_S) as leaving:
            leaving.shield = True
            await control.leave_now()
    return False
