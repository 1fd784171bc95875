"""The store contract for refused changes: the domain's own error comes out, and nothing changes.

The engine changes jobs and workers with the pure functions of ``hodei_core._lifecycle``, run
by the store inside its atomic step; when one refuses (a stale report, a move the state table
does not have), the caller must get that very error, as the ``Store`` docstring says of any
exception a change function raises: not a ``StorageError``, not a driver's exception, not an
exception group. These tests make the refusals with those functions, so that it is the store's
own path (on SQL, a transaction, possibly shared with other calls) that is tested.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from ..._lifecycle import finish, lose, request_cancel, start, transition_worker, unschedulable
from ..._models import Job, JobState, LogChunk, Outcome, Stream, WorkerState
from ...errors import InvalidTransition, JobAlreadyFinished, JobNotFound, StaleAttempt
from ...ports import Store
from ._support import _T0, _assign, _job, _keep, _raises, _register, _start


def _bare(error: BaseException, expected: type[BaseException]) -> None:
    # ``_raises`` lets anything else through, which already fails the test; a subclass made
    # by the adapter (a wrapper that is also a StorageError, say) is not the domain's error.
    assert type(error) is expected, f"the store raised {error!r}, not a bare {expected.__name__}"


class RefusalsContract:
    """The store contract for changes the domain refuses.

    Mixed into ``StoreContract``.
    """

    async def test_update_job_with_a_stale_attempt_raises_stale_attempt(self, store: Store) -> None:
        """A start or an end reported for an attempt that is no longer the job's (or by a
        worker that no longer holds it) raises ``StaleAttempt`` as such, and stores nothing:
        neither the change nor the chunks that came with it."""
        w1 = await _register(store, "w1")
        w2 = await _register(store, "w2")
        await store.add_job(_job("j1"))
        await _assign(store, "j1", w1.id)
        # w1 vanished before starting it: the job goes back to the queue as attempt 2, on w2
        await store.update_job("j1", lambda j: lose(j, _T0 + 1))
        await _assign(store, "j1", w2.id)
        current = await store.get_job("j1")
        assert current.attempt == 2
        late = [LogChunk(0, Stream.STDOUT, "from the old attempt", _T0 + 2)]

        with _raises(StaleAttempt) as caught:
            await store.update_job("j1", lambda j: start(j, 1, w1.id, _T0 + 2))
        _bare(caught.value, StaleAttempt)
        assert (caught.value.job_id, caught.value.attempt, caught.value.current) == ("j1", 1, 2)

        with _raises(StaleAttempt) as caught:
            await store.update_job(
                "j1", lambda j: finish(j, 1, w1.id, Outcome(exit_code=0), _T0 + 3), late
            )
        _bare(caught.value, StaleAttempt)

        # the right attempt from the wrong worker is just as stale
        with _raises(StaleAttempt) as caught:
            await store.update_job(
                "j1", lambda j: finish(j, 2, w1.id, Outcome(exit_code=0), _T0 + 3), late
            )
        _bare(caught.value, StaleAttempt)

        assert await store.get_job("j1") == current
        assert await store.read_logs("j1", 1) == []
        assert await store.read_logs("j1", 2) == []

    async def test_update_job_with_an_illegal_transition_raises_invalid_transition(
        self, store: Store
    ) -> None:
        """A move the state table does not have raises ``InvalidTransition`` as such: a start
        reported for a job nobody was given, a job found impossible to place while its process
        is being stopped. The job stays as it was."""
        w1 = await _register(store, "w1")
        await store.add_job(_job("queued"))
        await store.add_job(_job("cancelling"))
        await _assign(store, "cancelling", w1.id)
        await _start(store, "cancelling")
        await store.update_job("cancelling", lambda j: request_cancel(j, _T0 + 1))
        before = {job_id: await store.get_job(job_id) for job_id in ("queued", "cancelling")}
        assert before["cancelling"].state is JobState.CANCELLING

        with _raises(InvalidTransition) as caught:
            await store.update_job("queued", lambda j: start(j, 1, None, _T0 + 2))
        _bare(caught.value, InvalidTransition)
        assert (caught.value.id, caught.value.current, caught.value.wanted) == (
            "queued",
            JobState.QUEUED,
            JobState.RUNNING,
        )

        with _raises(InvalidTransition) as caught:
            await store.update_job("cancelling", lambda j: unschedulable(j, _T0 + 2))
        _bare(caught.value, InvalidTransition)
        assert caught.value.wanted is JobState.FAILED

        assert {job_id: await store.get_job(job_id) for job_id in before} == before
        assert [job.id for job in await store.queued_jobs(10)] == ["queued"]

    async def test_update_of_a_finished_job_raises_job_already_finished(self, store: Store) -> None:
        """Cancelling a job that has ended raises ``JobAlreadyFinished`` as such."""
        w1 = await _register(store, "w1")
        await store.add_job(_job("j1"))
        await _assign(store, "j1", w1.id)
        _, done = await store.update_job(
            "j1", lambda j: finish(j, 1, w1.id, Outcome(exit_code=0), _T0 + 1)
        )
        assert done.state is JobState.SUCCEEDED

        with _raises(JobAlreadyFinished) as caught:
            await store.update_job("j1", lambda j: request_cancel(j, _T0 + 2))
        _bare(caught.value, JobAlreadyFinished)
        assert (caught.value.job_id, caught.value.state) == ("j1", JobState.SUCCEEDED)
        assert await store.get_job("j1") == done

    async def test_update_worker_with_an_illegal_transition_raises_invalid_transition(
        self, store: Store
    ) -> None:
        """Draining a worker that has left raises ``InvalidTransition`` as such; the worker
        stays offline."""
        w1 = await _register(store, "w1")
        offline, _ = await store.leave_worker(w1.id, _keep)
        assert offline.state is WorkerState.OFFLINE

        with _raises(InvalidTransition) as caught:
            await store.update_worker(w1.id, lambda w: transition_worker(w, WorkerState.DRAINING))
        _bare(caught.value, InvalidTransition)
        assert (caught.value.id, caught.value.wanted) == (w1.id, WorkerState.DRAINING)
        assert await store.get_worker(w1.id) == offline

    async def test_refused_updates_among_concurrent_ones_fail_alone(self, store: Store) -> None:
        """Updates that arrive together (which a store may carry out in one transaction) each
        get their own outcome: the refused ones their own domain error, as such, and nothing
        of theirs stored; the others stored with their chunks."""
        w1 = await _register(store, "w1", slots=10)
        for job_id in ("ok-start", "ok-finish", "stale", "illegal"):
            await store.add_job(_job(job_id))
        for job_id in ("ok-start", "ok-finish", "stale"):
            await _assign(store, job_id, w1.id)
        chunk = [LogChunk(0, Stream.STDOUT, "out", _T0 + 1)]
        success = Outcome(exit_code=0)
        changes: dict[str, Callable[[Job], Job]] = {
            "ok-start": lambda j: start(j, 1, w1.id, _T0 + 1),
            "ok-finish": lambda j: finish(j, 1, w1.id, success, _T0 + 1),
            "stale": lambda j: finish(j, 7, w1.id, success, _T0 + 1),
            "illegal": lambda j: start(j, 1, None, _T0 + 1),
            "unknown": lambda j: start(j, 1, w1.id, _T0 + 1),
        }
        before = {job_id: await store.get_job(job_id) for job_id in ("stale", "illegal")}
        outcomes: dict[str, Job | BaseException] = {}

        async def update(job_id: str) -> None:
            try:
                _, outcomes[job_id] = await store.update_job(job_id, changes[job_id], chunk)
            except (StaleAttempt, InvalidTransition, JobNotFound) as error:
                outcomes[job_id] = error

        async with trio.open_nursery() as nursery:
            for job_id in changes:
                nursery.start_soon(update, job_id)

        kinds = {job_id: type(outcome) for job_id, outcome in outcomes.items()}
        assert kinds == {
            "ok-start": Job,
            "ok-finish": Job,
            "stale": StaleAttempt,
            "illegal": InvalidTransition,
            "unknown": JobNotFound,
        }
        assert (await store.get_job("ok-start")).state is JobState.RUNNING
        assert (await store.get_job("ok-finish")).state is JobState.SUCCEEDED
        assert {job_id: await store.get_job(job_id) for job_id in before} == before
        for job_id in ("ok-start", "ok-finish"):
            assert await store.read_logs(job_id, 1) == chunk
        for job_id in ("stale", "illegal", "unknown"):
            assert await store.read_logs(job_id, 1) == []
