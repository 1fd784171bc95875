"""The memory store's job output: each attempt's log chunks, kept in ``seq`` order on read."""

from __future__ import annotations

from collections.abc import Sequence

from hodei_core import LogChunk

__all__ = ["Logs"]


class _AttemptLog:
    __slots__ = ("chunks", "in_order", "seqs")

    def __init__(self) -> None:
        self.chunks: list[LogChunk] = []
        self.seqs: set[int] = set()
        # chunks usually arrive in order: sort only when one did not, and only when read
        self.in_order = True


class Logs:
    """The chunks of every attempt, by ``(job_id, attempt)``; a resent ``seq`` is ignored."""

    def __init__(self) -> None:
        self._logs: dict[tuple[str, int], _AttemptLog] = {}

    def append(self, job_id: str, attempt: int, chunks: Sequence[LogChunk]) -> None:
        """Add chunks of one attempt (see ``Store.append_logs``)."""
        log = self._logs.get((job_id, attempt))
        if log is None:
            log = self._logs[(job_id, attempt)] = _AttemptLog()
        for chunk in chunks:
            if chunk.seq in log.seqs:
                continue
            if log.chunks and chunk.seq < log.chunks[-1].seq:
                log.in_order = False
            log.seqs.add(chunk.seq)
            log.chunks.append(chunk)

    def read(
        self, job_id: str, attempt: int, from_seq: int = 0, limit: int | None = None
    ) -> list[LogChunk]:
        """The attempt's chunks from ``from_seq`` on, in ``seq`` order (see ``Store.read_logs``)."""
        log = self._logs.get((job_id, attempt))
        if log is None:
            return []
        if not log.in_order:
            log.chunks.sort(key=lambda c: c.seq)
            log.in_order = True
        out = [c for c in log.chunks if c.seq >= from_seq] if from_seq else list(log.chunks)
        return out if limit is None else out[:limit]
