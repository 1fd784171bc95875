"""The embedded engine with real processes: what a user of ``open_embedded`` sees."""

from __future__ import annotations

import re
from pathlib import Path

import trio

from hodei_backends import open_embedded
from hodei_core import FailureReason, JobSpec, JobState, Stream

README = Path(__file__).parent.parent / "README.md"


async def test_a_secret_split_across_two_writes_never_reaches_the_log() -> None:
    secret = "s3cr3t-t0ken-value"
    half = len(secret) // 2
    # two separate writes, with a pause between them, so that they are read apart
    script = (
        f"printf 'before %s' \"${{TOKEN%{secret[half:]}}}\"; sleep 0.2; "
        f"printf '%s after\\n' '{secret[half:]}'"
    )
    async with open_embedded() as hodei:
        job = await hodei.submit(JobSpec(script=script, secrets={"TOKEN": secret}))
        job = await hodei.wait(job.id)
        chunks = await hodei.logs(job.id)
    text = "".join(c.data for c in chunks)
    assert job.state is JobState.SUCCEEDED
    assert text == "before *** after\n"
    assert len(chunks) >= 2  # it really was written (and sent) in pieces
    assert secret[:half] not in "".join(c.data for c in chunks[:1])


async def test_stdout_and_stderr_are_kept_apart_in_order() -> None:
    script = "echo out-1; echo err-1 >&2; sleep 0.15; echo out-2; echo err-2 >&2; exit 3"
    async with open_embedded() as hodei:
        job = await hodei.wait((await hodei.submit(JobSpec(script=script))).id)
        chunks = await hodei.logs(job.id)
    assert (job.state, job.exit_code, job.failure) == (
        JobState.FAILED,
        3,
        FailureReason.SCRIPT_FAILURE,
    )
    by_stream = {s: "".join(c.data for c in chunks if c.stream is s) for s in Stream}
    assert by_stream == {Stream.STDOUT: "out-1\nout-2\n", Stream.STDERR: "err-1\nerr-2\n"}
    assert [c.seq for c in chunks] == list(range(len(chunks)))


async def test_timeout_kills_the_process() -> None:
    async with open_embedded() as hodei:
        job = await hodei.submit(JobSpec(script="echo start; sleep 30", timeout_s=0.3))
        with trio.fail_after(10):
            job = await hodei.wait(job.id)
    assert (job.state, job.failure) == (JobState.TIMED_OUT, FailureReason.TIMEOUT)


async def test_the_readme_snippet_works_verbatim() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    snippet = next(b for b in blocks if "open_embedded" in b and "trio.run(main)" in b)
    namespace: dict[str, object] = {}
    # run everything but the last line (trio.run), then await main() in this test's loop
    exec(snippet.replace("trio.run(main)", ""), namespace)
    await namespace["main"]()  # type: ignore[operator]
