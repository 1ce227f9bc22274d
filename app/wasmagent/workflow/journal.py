"""The job journal's records and where they live in the `Store` — pure data, no I/O.

Layout (all JSON):
- `wf/job/<id>/meta`      the job: kind, status, owner and lease, attempts, last error,
                          progress, result. Every change to a job is a `commit` that expects the
                          meta bytes its writer last saw, so the meta doubles as the job's lock.
- `wf/job/<id>/input`     what the job was started with (dropped when it finishes)
- `wf/job/<id>/step/<n>`  step n's name, result and attempts, written in the same commit as
                          the step's own effects
- `wf/open/<id>`          present while the job is unfinished: resuming scans only these
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

from .. import keyspace

JOB_PREFIX = keyspace.JOBS
OPEN_PREFIX = keyspace.OPEN_JOBS


class JobStatus(StrEnum):
    RUNNING = "running"
    """Started and not finished; `owner` holds the lease while it runs."""
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


def meta_key(job_id: str) -> str:
    return f"{JOB_PREFIX}{job_id}/meta"


def input_key(job_id: str) -> str:
    return f"{JOB_PREFIX}{job_id}/input"


def step_key(job_id: str, n: int) -> str:
    return f"{JOB_PREFIX}{job_id}/step/{n:06d}"


def open_key(job_id: str) -> str:
    return f"{OPEN_PREFIX}{job_id}"


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as stored in its meta. `attempts` counts every run of a step that failed plus
    every resumption after the owner went away; `runs` counts claims (1 = never resumed)."""

    id: str
    kind: str
    title: str
    status: JobStatus
    created: float
    updated: float
    owner: str | None = None
    lease_until: float = 0.0
    steps_done: int = 0
    attempts: int = 0
    runs: int = 0
    last_error: dict[str, str] | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    tenant: str | None = None
    """Whose job it is (`tenancy.py`): only that tenant's `jobs.*` requests see it."""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def claimable(self, owner: str, now: float) -> bool:
        """Whether `owner` may take this job over: unfinished, and its lease is free or ours."""
        return not self.finished and (self.owner in (None, owner) or self.lease_until <= now)

    def evolve(self, **changes: Any) -> JobRecord:
        return replace(self, **changes)

    def encode(self) -> bytes:
        data = asdict(self)
        if data["tenant"] is None:
            del data["tenant"]  # the meta of a job without tenant is what it always was
        return json.dumps(data, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> JobRecord:
        data = json.loads(raw)
        data["status"] = JobStatus(data["status"])
        return cls(**data)

    def public(self) -> dict[str, Any]:
        """The job as `jobs.*` results show it (no lease internals)."""
        return {"id": self.id, "kind": self.kind, "title": self.title,
                "status": self.status.value, "created": self.created, "updated": self.updated,
                "steps_done": self.steps_done, "attempts": self.attempts, "runs": self.runs,
                "last_error": self.last_error, "progress": self.progress,
                "result": self.result}


@dataclass(frozen=True, slots=True)
class StepRecord:
    name: str
    result: Any
    attempts: int

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> StepRecord:
        return cls(**json.loads(raw))
