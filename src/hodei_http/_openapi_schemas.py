"""The OpenAPI document's component schemas: every JSON body the server reads or writes.

Response schemas are closed (``additionalProperties: false``) and list every field as
required, so that the schema conformance tests notice any drift between ``_wire`` and this.
"""

from __future__ import annotations

from typing import Any

from hodei_core import FailureReason, JobState, RunState, StepState, Stream, WorkerState

__all__ = ["SCHEMAS", "ref"]

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def _null(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _closed(properties: dict[str, Schema], *, optional: tuple[str, ...] = ()) -> Schema:
    required = [name for name in properties if name not in optional]
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def _enum(values: list[str], description: str = "") -> Schema:
    schema: Schema = {"type": "string", "enum": values}
    if description:
        schema["description"] = description
    return schema


_STR = {"type": "string"}
_INT = {"type": "integer"}
_NUM = {"type": "number"}
_BOOL = {"type": "boolean"}
_TIME = {"type": "number", "description": "seconds since the Unix epoch"}
_STRINGS = {"type": "array", "items": _STR}
_VARIABLES = {"type": "object", "additionalProperties": _STR}
_ATTEMPT = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
_SEQ = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}

_SPEC_OUT = {
    "command": _null(_STRINGS),
    "script": _null(_STR),
    "env": _VARIABLES,
    "secrets": {
        "type": "object",
        "additionalProperties": _STR,
        "description": "the names of the secrets; their values are always shown as ***",
    },
    "labels": _STRINGS,
    "resources": ref("Resources"),
    "timeout_s": _null(_NUM),
    "retries": _INT,
    "priority": _INT,
}
_SPEC_IN = {
    "command": _null({**_STRINGS, "description": "argv to execute (or use script)"}),
    "script": _null({"type": "string", "description": "run by sh -c (or use command)"}),
    "env": _null({"type": "object", "additionalProperties": {"type": ["string", "number"]}}),
    "secrets": _null(
        {
            "type": "object",
            "additionalProperties": {"type": ["string", "number"]},
            "description": "exported like env, masked in the log",
        }
    ),
    "labels": _null({**_STRINGS, "description": "the worker must have all of them"}),
    "resources": _null(
        {
            "type": "object",
            "properties": {"cpu": _null(_NUM), "memory_mb": _null(_INT)},
            "additionalProperties": False,
        }
    ),
    "timeout_s": _null({"type": "number", "exclusiveMinimum": 0}),
    "retries": _null({"type": "integer", "minimum": 0, "maximum": 100}),
    "priority": _null({"type": "integer", "description": "higher is scheduled first"}),
}

_JOB_ATTEMPT = _closed({"job_id": _STR, "attempt": _ATTEMPT})
_CHUNK_IN = _closed(
    {
        "seq": {**_SEQ, "description": "0, 1, 2… within one attempt; a resent seq is ignored"},
        "stream": _enum([s.value for s in Stream]),
        "data": _STR,
        "ts": {"type": "number", "minimum": 0, "description": "when it was written (epoch s)"},
    },
    optional=("ts",),
)


def _sse_event(name: str, data: str, *, with_id: bool = False) -> Schema:
    properties: dict[str, Schema] = {
        "event": {"const": name},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": ref(data),
        },
    }
    if with_id:
        properties["id"] = {"type": "string", "pattern": "^[0-9]+:[0-9]+$"}
    return {"type": "object", "properties": properties, "required": list(properties)}


def _page(item: str) -> Schema:
    return _closed(
        {
            "items": {"type": "array", "items": ref(item)},
            "next_offset": _null(
                {"type": "integer", "description": "offset of the next page; null: no more"}
            ),
        }
    )


SCHEMAS: dict[str, Schema] = {
    "Error": _closed({"error": ref("ErrorBody")}),
    "ErrorBody": _closed(
        {
            "code": {
                "type": "string",
                "description": "stable: not_found, invalid, malformed_body, unauthorized, "
                "forbidden, stale_attempt, already_finished, invalid_transition, "
                "quota_exceeded, body_too_large, unsupported_media_type, unavailable, "
                "internal…",
            },
            "message": _STR,
            "details": {"type": "array", "items": ref("Problem")},
        }
    ),
    "Problem": _closed(
        {"path": {"type": "string", "description": "e.g. steps[2].depends_on[0]"}, "message": _STR}
    ),
    "Status": _closed({"status": _STR}),
    "Readiness": _closed(
        {"status": _STR, "bus": _enum(["up", "down"], "down: the engine re-reads the store")}
    ),
    "Resources": _closed({"cpu": _NUM, "memory_mb": _INT}),
    "JobSpec": _closed({**_SPEC_OUT, "name": _STR}),
    "JobSpecInput": {
        "type": "object",
        "description": "set exactly one of command and script; null means the default",
        "properties": {"name": _null(_STR), **_SPEC_IN},
        "additionalProperties": False,
    },
    "Job": _closed(
        {
            "id": _STR,
            "tenant": _STR,
            "spec": ref("JobSpec"),
            "state": _enum([s.value for s in JobState]),
            "attempt": _ATTEMPT,
            "unstarted_losses": {
                "type": "integer",
                "minimum": 0,
                "description": "attempts lost before they started: they cost no retry",
            },
            "worker_id": _null(_STR),
            "exit_code": _null(_INT),
            "failure": _null(_enum([f.value for f in FailureReason])),
            "created_at": _TIME,
            "assigned_at": _null(_TIME),
            "started_at": _null(_TIME),
            "finished_at": _null(_TIME),
            "run_id": _null(_STR),
            "step": _null(_STR),
            "name": {"type": "string", "description": "the spec's name, else the step's, else id"},
        }
    ),
    "JobPage": _page("Job"),
    "Step": _closed({"name": _STR, "depends_on": _STRINGS, **_SPEC_OUT}),
    "StepInput": {
        "type": "object",
        "properties": {"name": _STR, "depends_on": _null(_STRINGS), **_SPEC_IN},
        "required": ["name"],
        "additionalProperties": False,
    },
    "Pipeline": _closed(
        {
            "id": _STR,
            "tenant": _STR,
            "name": _STR,
            "steps": {"type": "array", "items": ref("Step")},
            "created_at": _TIME,
        }
    ),
    "PipelineInput": {
        "type": "object",
        "properties": {"name": _STR, "steps": {"type": "array", "items": ref("StepInput")}},
        "required": ["name", "steps"],
        "additionalProperties": False,
    },
    "PipelinePage": _page("Pipeline"),
    "Run": _closed(
        {
            "id": _STR,
            "pipeline_id": _STR,
            "pipeline_name": _STR,
            "tenant": _STR,
            "state": _enum([s.value for s in RunState]),
            "steps": {
                "type": "array",
                "items": _closed(
                    {
                        "name": _STR,
                        "state": _enum([s.value for s in StepState]),
                        "job_id": _null(_STR),
                    }
                ),
            },
            "cancel_requested": _BOOL,
            "created_at": _TIME,
            "finished_at": _null(_TIME),
        }
    ),
    "RunPage": _page("Run"),
    "LogChunk": _closed(
        {"seq": _SEQ, "stream": _enum([s.value for s in Stream]), "data": _STR, "ts": _TIME}
    ),
    "LogPage": _closed(
        {
            "job_id": _STR,
            "attempt": _ATTEMPT,
            "state": _enum([s.value for s in JobState]),
            "chunks": {"type": "array", "items": ref("LogChunk")},
            "next_offset": {"type": "integer", "description": "the offset to read on from"},
        }
    ),
    "LogEvent": _closed(
        {
            "attempt": _ATTEMPT,
            "seq": _SEQ,
            "stream": _enum([s.value for s in Stream]),
            "data": _STR,
            "ts": _TIME,
        }
    ),
    "AttemptEvent": _closed({"attempt": _ATTEMPT}),
    "ServerSentEvent": {
        "description": "one event of a log stream; its data is one line of JSON",
        "oneOf": [
            _sse_event("log", "LogEvent", with_id=True),
            _sse_event("attempt", "AttemptEvent"),
            _sse_event("end", "Job"),
        ],
    },
    "Worker": _closed(
        {
            "id": _STR,
            "name": _STR,
            "labels": _STRINGS,
            "capacity": _closed({"slots": _INT, "cpu": _null(_NUM), "memory_mb": _null(_INT)}),
            "state": _enum([s.value for s in WorkerState]),
            "last_heartbeat": _TIME,
            "registered_at": _TIME,
            "version": _STR,
            "hostname": _STR,
        }
    ),
    "WorkerPage": _page("Worker"),
    "Registration": _closed(
        {
            "name": {
                "type": "string",
                "maxLength": 64,
                "description": "unique; 1-64 letters, digits, '_' or '-'",
            },
            "labels": {"type": "array", "items": {"type": "string", "minLength": 1}},
            "capacity": _closed(
                {
                    "slots": {"type": "integer", "minimum": 1, "maximum": 100000},
                    "cpu": _null({"type": "number", "minimum": 0}),
                    "memory_mb": _null({"type": "integer", "minimum": 0, "maximum": 2**31 - 1}),
                },
                optional=("slots", "cpu", "memory_mb"),
            ),
            "version": {"type": "string", "maxLength": 200},
            "hostname": {"type": "string", "maxLength": 200},
            "running": {
                "type": "array",
                "items": ref("JobAttempt"),
                "description": "attempts the agent still runs when it registers again; the "
                "worker's other active jobs are released",
            },
        },
        optional=("labels", "capacity", "version", "hostname", "running"),
    ),
    "RegistrationResult": _closed(
        {
            "worker": ref("Worker"),
            "token": {
                "type": "string",
                "description": "the worker token: Authorization: Bearer <token> on its calls",
            },
            "heartbeat_interval_s": _NUM,
            "poll_wait_s": _NUM,
            "lost_after_s": _NUM,
        }
    ),
    "JobAttempt": _JOB_ATTEMPT,
    "RunningAttempts": _closed(
        {
            "running": {
                "type": "array",
                "items": ref("JobAttempt"),
                "description": "the attempts the worker runs, leaving out those it is stopping",
            }
        },
        optional=("running",),
    ),
    "Instructions": _closed(
        {
            "jobs": {
                "type": "array",
                "items": ref("Job"),
                "description": "jobs to start (their spec's secrets are in clear)",
            },
            "cancel": {"type": "array", "items": ref("JobAttempt")},
            "drain": _BOOL,
        }
    ),
    "HeartbeatResult": _closed(
        {
            "cancel": {"type": "array", "items": ref("JobAttempt")},
            "drain": _BOOL,
            "heartbeat_interval_s": _NUM,
        }
    ),
    "Empty": _closed({}),
    "StartReport": _closed({"attempt": _ATTEMPT}),
    "LogChunkInput": _CHUNK_IN,
    "LogReport": _closed(
        {"attempt": _ATTEMPT, "chunks": {"type": "array", "items": ref("LogChunkInput")}}
    ),
    "LogReceipt": _closed({"job_id": _STR, "attempt": _ATTEMPT, "received": _INT}),
    "Report": _closed(
        {
            "job_id": _STR,
            "attempt": _ATTEMPT,
            "type": _enum(["start", "logs", "finish"]),
            "chunks": {
                "type": "array",
                "items": ref("LogChunkInput"),
                "description": "output (logs, finish; none with start)",
            },
            "exit_code": _null({"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}),
            "timed_out": _BOOL,
            "cancelled": _BOOL,
            "error": _null({"type": "string", "description": "the job could not be run at all"}),
        },
        optional=("chunks", "exit_code", "timed_out", "cancelled", "error"),
    ),
    "ReportBatch": _closed(
        {"reports": {"type": "array", "items": ref("Report"), "maxItems": 1000}}
    ),
    "ReportResults": _closed(
        {
            "results": {
                "type": "array",
                "items": _closed(
                    {
                        "status": {
                            "type": "integer",
                            "description": "what the report's own endpoint would answer",
                        },
                        "error": ref("ErrorBody"),
                    },
                    optional=("error",),
                ),
            }
        }
    ),
    "FinishReport": _closed(
        {
            "attempt": _ATTEMPT,
            "exit_code": _null({"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}),
            "timed_out": _BOOL,
            "cancelled": _BOOL,
            "error": _null({"type": "string", "description": "the job could not be run at all"}),
            "log_chunks": {"type": "array", "items": ref("LogChunkInput")},
        },
        optional=("exit_code", "timed_out", "cancelled", "error", "log_chunks"),
    ),
}
