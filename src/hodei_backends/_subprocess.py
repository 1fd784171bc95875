"""Runs jobs as local processes: the ``Executor`` a worker uses by default."""

from __future__ import annotations

import codecs
import contextlib
import math
import os
import signal
import subprocess

import attrs
import trio

from hodei_core import Job, Stream
from hodei_core.errors import ExecutorError
from hodei_core.ports import LogSink

__all__ = ["SubprocessExecutor"]


@attrs.frozen(kw_only=True)
class SubprocessExecutor:
    """Runs a job's argv in its own session and streams its output to a ``LogSink``.

    The process gets the worker's environment plus the job's ``env`` and ``secrets`` and
    ``HODEI_JOB_ID`` / ``HODEI_ATTEMPT``. Output goes to the sink per stream in batches of at
    most ``chunk_bytes`` characters, at the latest ``flush_interval_s`` after it was produced.
    Secrets are not masked and timeouts are not enforced here: the worker loop does both.

    When the main process exits, every process left in its group is killed, so nothing the job
    started outlives it. When cancelled, the group gets SIGTERM, then SIGKILL after ``grace_s``.

    Args:
        grace_s: How long a cancelled job may take to exit after SIGTERM.
        chunk_bytes: The most bytes read, and held, per stream before writing to the sink.
        flush_interval_s: The longest output waits before it is written to the sink.
        cwd: The working directory of the job, or None for the worker's.
    """

    grace_s: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))
    chunk_bytes: int = attrs.field(default=65536, validator=attrs.validators.gt(0))
    flush_interval_s: float = attrs.field(default=0.1, validator=attrs.validators.gt(0))
    cwd: str | None = None

    async def run(self, job: Job, logs: LogSink) -> int:
        """Run ``job`` to completion, writing its output to ``logs``.

        Returns:
            The exit code, or 128 + N if the process was killed by signal N.

        Raises:
            ExecutorError: The process could not be started.
        """
        env = {
            **os.environ,
            **job.spec.env,
            **job.spec.secrets,
            "HODEI_JOB_ID": job.id,
            "HODEI_ATTEMPT": str(job.attempt),
        }
        try:
            proc = await trio.lowlevel.open_process(
                job.spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise ExecutorError(f"cannot start job {job.id}: {exc}") from exc
        assert proc.stdout is not None
        assert proc.stderr is not None
        exited = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, proc.stdout, Stream.STDOUT, logs, exited)
                nursery.start_soon(self._pump, proc.stderr, Stream.STDERR, logs, exited)
                await _until_exited(proc)
                # The job ends with its main process; whatever it left behind in the group
                # would otherwise live on, and could hold the pipes open forever.
                _kill_group(proc.pid, signal.SIGKILL)
                exited.set()
        except BaseException:
            # Cancelled, or the sink failed: stop the job whatever happens to us meanwhile.
            with trio.CancelScope(shield=True):
                _kill_group(proc.pid, signal.SIGTERM)
                with trio.move_on_after(self.grace_s):
                    await _until_exited(proc)
                _kill_group(proc.pid, signal.SIGKILL)
            raise
        finally:
            with trio.CancelScope(shield=True):
                await proc.stdout.aclose()
                await proc.stderr.aclose()
                # Reaping only now keeps the group id reserved until the group is killed.
                code = await proc.wait()
        return 128 - code if code < 0 else code

    async def _pump(
        self, pipe: trio.abc.ReceiveStream, stream: Stream, logs: LogSink, exited: trio.Event
    ) -> None:
        """Copy ``pipe`` to ``logs`` in batches until end of file."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        buf = bytearray()
        flush_at = math.inf
        while True:
            group_killed = exited.is_set()
            received = False
            # Waking at least every interval lets the reader notice that the job is over.
            with trio.move_on_at(min(flush_at, trio.current_time() + self.flush_interval_s)):
                data = await pipe.receive_some(self.chunk_bytes - len(buf))
                if not data:
                    break
                received = True
                if not buf:
                    flush_at = trio.current_time() + self.flush_interval_s
                buf += data
            if buf and (len(buf) >= self.chunk_bytes or trio.current_time() >= flush_at):
                await _write(logs, stream, decoder.decode(bytes(buf)))
                buf.clear()
                flush_at = math.inf
            elif group_killed and not received:
                # Once the group is dead whatever it wrote is readable at once, so a silent
                # pipe is held by a process that left the session: stop listening to it.
                break
        await _write(logs, stream, decoder.decode(bytes(buf), final=True))


async def _write(logs: LogSink, stream: Stream, text: str) -> None:
    if text:
        await logs.write(stream, text)


async def _until_exited(proc: trio.Process) -> None:
    """Wait until the process has exited, without reaping it where the OS allows.

    An unreaped (zombie) leader keeps its pid, which is the group id, from being reused, so a
    later ``killpg`` cannot hit an unrelated group.
    """
    if not hasattr(os, "pidfd_open"):
        await proc.wait()
        return
    fd = os.pidfd_open(proc.pid)
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group is gone already
        os.killpg(pgid, sig)
