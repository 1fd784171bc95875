"""The SQL store's pipelines, runs and log chunks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hodei_core import Job, LogChunk, Pipeline, Run
from hodei_core.errors import PipelineNotFound, RunNotFound

from ._compiled import Tx
from ._database import Database
from ._locks import Locks
from ._rows import chunk_from_row, chunk_row, pipeline_from_row, pipeline_row, run_from_row, run_row
from ._store_jobs import insert_jobs

__all__ = ["PipelinesRunsLogsMixin"]


class PipelinesRunsLogsMixin:
    """``Store`` methods about pipelines, runs and logs, for ``SqlStore``."""

    _db: Database

    # -- pipelines --

    async def add_pipeline(self, pipeline: Pipeline) -> None:
        """See ``hodei_core.ports.Store.add_pipeline``."""
        sql, row = self._db.statements.insert_pipeline, pipeline_row(pipeline)
        await self._db.write("add_pipeline", lambda tx: tx.run(sql, row))

    async def get_pipeline(self, pipeline_id: str) -> Pipeline:
        """See ``hodei_core.ports.Store.get_pipeline``."""
        sql = self._db.statements.pipeline

        def get(tx: Tx) -> Pipeline:
            row = tx.first(sql, {"id": pipeline_id})
            if row is None:
                raise PipelineNotFound(pipeline_id)
            return pipeline_from_row(row)

        return await self._db.read("get_pipeline", get)

    async def list_pipelines(self, tenant: str | None = None) -> list[Pipeline]:
        """See ``hodei_core.ports.Store.list_pipelines``."""
        s = self._db.statements
        sql = s.pipelines if tenant is None else s.pipelines_of_tenant

        def list_(tx: Tx) -> list[Pipeline]:
            return list(map(pipeline_from_row, tx.rows(sql, {"tenant": tenant})))

        return await self._db.read("list_pipelines", list_)

    async def delete_pipeline(self, pipeline_id: str) -> None:
        """See ``hodei_core.ports.Store.delete_pipeline``."""
        sql = self._db.statements.delete_pipeline

        def delete(tx: Tx) -> None:
            if tx.run(sql, {"id": pipeline_id}) == 0:
                raise PipelineNotFound(pipeline_id)

        await self._db.write("delete_pipeline", delete)

    # -- runs --

    async def add_run(self, run: Run, jobs: Sequence[Job]) -> None:
        """See ``hodei_core.ports.Store.add_run``."""
        s = self._db.statements
        row = run_row(run)

        def add(tx: Tx) -> None:
            tx.run(s.insert_run, row)
            insert_jobs(tx, s, jobs)

        await self._db.write("add_run", add)

    async def get_run(self, run_id: str) -> Run:
        """See ``hodei_core.ports.Store.get_run``."""
        sql = self._db.statements.run

        def get(tx: Tx) -> Run:
            row = tx.first(sql, {"id": run_id})
            if row is None:
                raise RunNotFound(run_id)
            return run_from_row(row)

        return await self._db.read("get_run", get)

    async def list_runs(self, pipeline_id: str | None = None) -> list[Run]:
        """See ``hodei_core.ports.Store.list_runs``."""
        s = self._db.statements
        sql = s.runs if pipeline_id is None else s.runs_of_pipeline

        def list_(tx: Tx) -> list[Run]:
            return list(map(run_from_row, tx.rows(sql, {"pipeline_id": pipeline_id})))

        return await self._db.read("list_runs", list_)

    async def update_run(
        self, run_id: str, change: Callable[[Run], tuple[Run, Sequence[Job]]]
    ) -> tuple[Run, list[Job]]:
        """See ``hodei_core.ports.Store.update_run``."""
        s = self._db.statements

        def update(tx: Tx) -> tuple[Run, list[Job]]:
            row = tx.first(s.run_for_update, {"id": run_id})
            if row is None:
                raise RunNotFound(run_id)
            before = run_from_row(row)
            after, new_jobs = change(before)
            added = list(new_jobs)
            # A run's copy of its pipeline does not change in practice: write it only if it did.
            with_pipeline = after.pipeline is not before.pipeline and (
                after.pipeline != before.pipeline
            )
            params = run_row(after, pipeline=with_pipeline)
            params["_id"] = params.pop("id")
            tx.run(s.update_run_and_pipeline if with_pipeline else s.update_run, params)
            insert_jobs(tx, s, added)
            return after, added

        return await self._db.write("update_run", update, locks=Locks(runs=(run_id,)))

    # -- logs --

    async def append_logs(self, job_id: str, attempt: int, chunks: Sequence[LogChunk]) -> None:
        """See ``hodei_core.ports.Store.append_logs``."""
        if not chunks:
            return
        sql = self._db.statements.insert_chunks
        keep_nul = self._db.dialect != "postgresql"
        rows = [chunk_row(job_id, attempt, chunk, keep_nul=keep_nul) for chunk in chunks]
        # One statement for the batch; a resent seq is dropped by the database itself.
        await self._db.write("append_logs", lambda tx: tx.run_many(sql, rows), local=True)

    async def read_logs(
        self, job_id: str, attempt: int, from_seq: int = 0, limit: int | None = None
    ) -> list[LogChunk]:
        """See ``hodei_core.ports.Store.read_logs``."""
        if limit is not None and limit <= 0:
            return []
        s = self._db.statements
        sql = s.chunks if limit is None else s.chunks_limited
        params = {"job_id": job_id, "attempt": attempt, "from_seq": from_seq, "limit": limit}

        def read(tx: Tx) -> list[LogChunk]:
            return list(map(chunk_from_row, tx.rows(sql, params)))

        return await self._db.read("read_logs", read)
