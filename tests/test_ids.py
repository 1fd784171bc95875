"""Ids: unique within a process, and across processes that share a store."""

from __future__ import annotations

import os

import pytest

from hodei_core._context import new_id


def test_ids_in_one_process_are_all_different() -> None:
    ids = [new_id("job") for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("job-") and len(i) == len("job-") + 20 for i in ids)


# Python 3.12+ warns about fork() in a process with threads (trio's idle worker threads may be
# there); the child here only makes an id and writes it.
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_forked_child_does_not_make_its_parents_ids() -> None:
    # The child's next id would repeat the parent's next one if it kept the parent's random part.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_id("job").encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    parent = new_id("job")
    assert child.startswith("job-") and len(child) == len(parent)
    assert child[:16] != parent[:16]  # the random part differs, not just the counter
