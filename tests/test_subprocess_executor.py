"""SubprocessExecutor: output streaming, environment, errors, exit codes and process cleanup."""

from __future__ import annotations

import os
import stat
import tracemalloc
from pathlib import Path

import pytest
import trio

from hodei_backends._subprocess import SubprocessExecutor
from hodei_core import Job, JobSpec, Stream
from hodei_core.errors import ExecutorError


def make_job(script: str | None = None, **spec: object) -> Job:
    return Job(id="job-1", attempt=2, spec=JobSpec(script=script, **spec))  # type: ignore[arg-type]


class Sink:
    """Records every write; sets ``seen`` once the stdout text contains ``until``."""

    def __init__(self, until: str | None = None) -> None:
        self.writes: list[tuple[Stream, str]] = []
        self.until = until
        self.seen = trio.Event()

    async def write(self, stream: Stream, data: str) -> None:
        await trio.lowlevel.checkpoint()
        self.writes.append((stream, data))
        if self.until is not None and self.until in self.text(Stream.STDOUT):
            self.seen.set()

    def text(self, stream: Stream) -> str:
        return "".join(data for s, data in self.writes if s is stream)

    def pids(self) -> list[int]:
        return [int(word) for word in self.text(Stream.STDOUT).split() if word.isdigit()]


async def wait_dead(pid: int) -> None:
    """Wait for a process that is not our child to exit (a zombie counts as exited)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with trio.fail_after(2):
            await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


async def test_stdout_and_stderr_are_kept_apart() -> None:
    sink = Sink()
    code = await SubprocessExecutor().run(make_job("echo hello; echo oops >&2; echo bye"), sink)
    assert code == 0
    assert sink.text(Stream.STDOUT) == "hello\nbye\n"
    assert sink.text(Stream.STDERR) == "oops\n"


@pytest.mark.parametrize(("script", "expected"), [("exit 3", 3), ("kill -9 $$", 128 + 9)])
async def test_exit_code(script: str, expected: int) -> None:
    assert await SubprocessExecutor().run(make_job(script), Sink()) == expected


async def test_env_secrets_and_job_identity_are_exported(tmp_path: Path) -> None:
    job = make_job(
        'echo "$PLAIN|$TOKEN|$HODEI_JOB_ID|$HODEI_ATTEMPT|${PATH:+path}|$(pwd)"',
        env={"PLAIN": "p"},
        secrets={"TOKEN": "s3cret"},
    )
    sink = Sink()
    assert await SubprocessExecutor(cwd=str(tmp_path)).run(job, sink) == 0
    assert sink.text(Stream.STDOUT) == f"p|s3cret|job-1|2|path|{tmp_path}\n"


async def test_missing_command_raises_executor_error() -> None:
    job = make_job(command=["hodei-no-such-command-xyz", "arg"])
    with pytest.raises(ExecutorError, match="hodei-no-such-command-xyz") as info:
        await SubprocessExecutor().run(job, Sink())
    assert isinstance(info.value.__cause__, FileNotFoundError)


async def test_non_executable_file_raises_executor_error(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    with pytest.raises(ExecutorError) as info:
        await SubprocessExecutor().run(make_job(command=[str(script)]), Sink())
    assert isinstance(info.value.__cause__, PermissionError)


async def test_cancel_terminates_the_whole_group() -> None:
    sink = Sink(until="ready")
    job = make_job("sleep 300 & echo $!; sleep 300 & echo $!; echo $$ ready; wait")
    start = trio.current_time()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(SubprocessExecutor(grace_s=5).run, job, sink)
            await sink.seen.wait()
            nursery.cancel_scope.cancel()
    # Well under grace_s: SIGTERM alone stopped them.
    assert trio.current_time() - start < 3
    pids = sink.pids()
    assert len(pids) == 3
    for pid in pids:
        await wait_dead(pid)


async def test_cancel_kills_what_ignores_sigterm_after_grace() -> None:
    sink = Sink(until="ready")
    job = make_job("trap '' TERM; sleep 300 & echo $! $$ ready; sleep 300")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(SubprocessExecutor(grace_s=0.2).run, job, sink)
            await sink.seen.wait()
            cancelled_at = trio.current_time()
            nursery.cancel_scope.cancel()
    assert 0.2 <= trio.current_time() - cancelled_at < 3
    pids = sink.pids()
    assert len(pids) == 2
    for pid in pids:
        await wait_dead(pid)


async def test_sink_error_stops_the_job() -> None:
    class FailingSink(Sink):
        async def write(self, stream: Stream, data: str) -> None:
            await super().write(stream, data)
            raise RuntimeError("sink broken")

    sink = FailingSink()
    with trio.fail_after(10), pytest.raises(ExceptionGroup) as info:
        await SubprocessExecutor().run(make_job("echo $$; exec sleep 300"), sink)
    assert info.group_contains(RuntimeError, match="sink broken")
    [pid] = sink.pids()
    await wait_dead(pid)


async def test_background_child_holding_stdout_does_not_block() -> None:
    sink = Sink()
    with trio.fail_after(10):
        code = await SubprocessExecutor().run(make_job("sleep 300 & echo $!"), sink)
    assert code == 0
    [pid] = sink.pids()
    await wait_dead(pid)


async def test_escaped_child_holding_stdout_does_not_block(tmp_path: Path) -> None:
    # setsid takes the child out of the job's process group, out of the executor's reach; the
    # fifo makes the main process wait until the child has escaped.
    sink = Sink()
    script = "mkfifo up; setsid sh -c 'echo $$; echo > up; exec sleep 300' & read x < up"
    with trio.fail_after(10):
        code = await SubprocessExecutor(cwd=str(tmp_path)).run(make_job(script), sink)
    assert code == 0
    [pid] = sink.pids()
    os.kill(pid, 9)
    await wait_dead(pid)


async def test_large_output_streams_in_bounded_chunks() -> None:
    total = 0
    biggest = 0

    class CountingSink:
        async def write(self, stream: Stream, data: str) -> None:
            nonlocal total, biggest
            await trio.lowlevel.checkpoint()
            total += len(data)
            biggest = max(biggest, len(data))

    executor = SubprocessExecutor(chunk_bytes=65536)
    tracemalloc.start()
    try:
        code = await executor.run(
            make_job("head -c 100000000 /dev/zero | tr '\\0' a"), CountingSink()
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 0
    assert total == 100_000_000
    assert biggest <= 65536
    assert peak < 5_000_000


async def test_multibyte_characters_split_across_reads() -> None:
    sink = Sink()
    text = "héllo wörld € 𝄞"
    job = make_job(command=["printf", "%s", text])
    assert await SubprocessExecutor(chunk_bytes=1).run(job, sink) == 0
    assert sink.text(Stream.STDOUT) == text
    assert len(sink.writes) == len(text)


async def test_invalid_and_truncated_utf8_is_replaced() -> None:
    sink = Sink()
    assert await SubprocessExecutor().run(make_job(r"printf 'a\377b\303'"), sink) == 0
    assert sink.text(Stream.STDOUT) == "a\ufffdb\ufffd"


async def test_small_writes_are_batched() -> None:
    sink = Sink()
    job = make_job("i=0; while [ $i -lt 1000 ]; do echo line $i; i=$((i+1)); done")
    assert await SubprocessExecutor().run(job, sink) == 0
    assert sink.text(Stream.STDOUT) == "".join(f"line {i}\n" for i in range(1000))
    assert len(sink.writes) < 50
