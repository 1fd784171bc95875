"""The wire format out: domain values as JSON objects, with a private cattrs converter (the
domain classes know nothing of JSON).

Enums are their string values, timestamps float epoch seconds, ids strings, label sets sorted
lists. A job spec's secret values are masked (``***``) everywhere except in the instructions a
worker receives, which must carry them to the process. Request bodies go the other way in
``_requests``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, get_origin

import cattrs
from cattrs.gen import make_dict_unstructure_fn

from hodei_core import Job, JobSpec, LogChunk, Pipeline, Run, Step, Worker
from hodei_core.ports import Instructions
from hodei_core.worker import MASK

__all__ = [
    "chunk_json",
    "heartbeat_json",
    "instructions_json",
    "job_json",
    "pipeline_json",
    "run_json",
    "steps_json",
    "worker_json",
]


def _is_frozenset(t: Any) -> bool:
    return t is frozenset or get_origin(t) is frozenset


def _is_tuple(t: Any) -> bool:
    return t is tuple or get_origin(t) is tuple


def _make_out(reveal_secrets: bool) -> cattrs.Converter:
    conv = cattrs.Converter()
    conv.register_unstructure_hook_func(_is_frozenset, sorted)
    conv.register_unstructure_hook_func(_is_tuple, lambda t: [conv.unstructure(v) for v in t])
    plain_spec = make_dict_unstructure_fn(JobSpec, conv)

    def spec(value: JobSpec) -> dict[str, Any]:
        out = plain_spec(value)
        if not reveal_secrets:
            out["secrets"] = dict.fromkeys(value.secrets, MASK)
        return out

    conv.register_unstructure_hook(JobSpec, spec)
    plain_job = make_dict_unstructure_fn(Job, conv)

    def job(value: Job) -> dict[str, Any]:
        out = plain_job(value)
        out["name"] = value.name
        return out

    conv.register_unstructure_hook(Job, job)

    def step(value: Step) -> dict[str, Any]:
        # flattened, as in a pipeline file: what GET returns can be sent back to POST
        fields = conv.unstructure(value.spec, JobSpec)
        del fields["name"]
        return {"name": value.name, "depends_on": list(value.depends_on), **fields}

    conv.register_unstructure_hook(Step, step)

    def run(value: Run) -> dict[str, Any]:
        return {
            "id": value.id,
            "pipeline_id": value.pipeline_id,
            "pipeline_name": value.pipeline.name,
            "tenant": value.tenant,
            "state": value.state.value,
            "steps": [
                {"name": s.name, "state": s.state.value, "job_id": s.job_id} for s in value.steps
            ],
            "cancel_requested": value.cancel_requested,
            "created_at": value.created_at,
            "finished_at": value.finished_at,
        }

    conv.register_unstructure_hook(Run, run)
    return conv


@functools.cache
def _converter(reveal_secrets: bool = False) -> cattrs.Converter:
    # built on first use, once: the hooks are generated code, not worth redoing per request
    return _make_out(reveal_secrets)


def job_json(job: Job, *, reveal_secrets: bool = False) -> dict[str, Any]:
    """A job as JSON; secret values are masked unless ``reveal_secrets`` (for its worker)."""
    conv = _converter(reveal_secrets)
    out: dict[str, Any] = conv.unstructure(job, Job)
    return out


def worker_json(worker: Worker) -> dict[str, Any]:
    """A worker as JSON."""
    out: dict[str, Any] = _converter().unstructure(worker, Worker)
    return out


def pipeline_json(pipeline: Pipeline) -> dict[str, Any]:
    """A pipeline as JSON, its steps in the shape of a pipeline file (secrets masked)."""
    out: dict[str, Any] = _converter().unstructure(pipeline, Pipeline)
    return out


def steps_json(steps: Sequence[Step], *, reveal_secrets: bool = False) -> list[dict[str, Any]]:
    """Pipeline steps as JSON, in the shape of a pipeline file (secrets masked unless
    ``reveal_secrets``)."""
    conv = _converter(reveal_secrets)
    return [conv.unstructure(step, Step) for step in steps]


def run_json(run: Run) -> dict[str, Any]:
    """A pipeline run as JSON."""
    out: dict[str, Any] = _converter().unstructure(run, Run)
    return out


def chunk_json(chunk: LogChunk) -> dict[str, Any]:
    """A log chunk as JSON."""
    out: dict[str, Any] = _converter().unstructure(chunk, LogChunk)
    return out


def _pairs(pairs: frozenset[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"job_id": job_id, "attempt": attempt} for job_id, attempt in sorted(pairs)]


def instructions_json(instructions: Instructions) -> dict[str, Any]:
    """What a worker must do, as JSON: its jobs carry their secrets in clear."""
    return {
        "jobs": [job_json(job, reveal_secrets=True) for job in instructions.jobs],
        "cancel": _pairs(instructions.cancel),
        "drain": instructions.drain,
    }


def heartbeat_json(instructions: Instructions, interval_s: float) -> dict[str, Any]:
    """The answer to a heartbeat: what to stop, whether to drain, when to beat again."""
    return {
        "cancel": _pairs(instructions.cancel),
        "drain": instructions.drain,
        "heartbeat_interval_s": interval_s,
    }
