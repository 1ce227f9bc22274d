"""`ingest` and `jobs.*`: adding documents as a durable job, and following jobs.

An ingestion is a journaled workflow (`workflow/`): it survives a reload or a restart and
resumes where it stopped. The request that started it follows it; cancelling that request
cancels the job, while a client merely going away does not.

`jobs.*` also show the agent's tool-using answers that were resumed after a reload or a
restart (kind `answer`, `pipeline/durable_loop.py`): nobody was left to stream to, so their
`result` carries the answer and each tool call's outcome, and `jobs.watch` follows them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, NoReturn

from ..agent import USER_CANCEL
from ..errors import AgentError, ErrorCode
from ..knowledge.ingest import ingest
from ..knowledge.library import Library
from ..protocol import (
    DocumentIn,
    Event,
    Ingest,
    JobsCancel,
    JobsGet,
    JobsList,
    JobsWatch,
    Progress,
    Result,
)
from ..telemetry import Telemetry
from ..tenancy import Scope
from ..workflow import JobRecord, JobStatus, Run, Workflows
from .knowledge import writable

Emit = Callable[[Event], None]


class Jobs:
    """The job handlers over one `Workflows` engine; `library_of(tenant)` finds where a job
    of that tenant writes."""

    def __init__(self, workflows: Workflows, telemetry: Telemetry,
                 library_of: Callable[[str | None], Library]) -> None:
        self.workflows = workflows
        self._telemetry = telemetry
        self._library_of = library_of
        workflows.register("ingest", self._run_ingest)

    async def _run_ingest(self, run: Run, job: dict[str, Any]) -> dict[str, Any]:
        documents = [DocumentIn(**d) for d in job["documents"]]
        report = await ingest(self._library_of(run.record.tenant), job["kb"], documents,
                              step=run.step, progress=run.progress)
        return report.to_dict()

    async def ingest(self, scope: Scope, request: Ingest, emit: Emit) -> None:
        writable(scope, request.kb)
        job_input = {"kb": request.kb, "documents": [asdict(d) for d in request.documents]}
        title = f"add {len(request.documents)} document(s) to {request.kb}"
        with self._telemetry.timer("ingest", request_id=request.id):
            try:
                job_id = await self.workflows.start("ingest", job_input, title=title,
                                                    tenant=scope.tenant)
            except AgentError as exc:
                if exc.code is not ErrorCode.STORAGE:
                    raise
                await _ingest_unsaved(scope, request, emit)
            try:
                record = await self._follow(job_id, request.id, emit)
            except asyncio.CancelledError as exc:
                if USER_CANCEL in exc.args:  # not when the client merely went away
                    await asyncio.shield(self.workflows.cancel(job_id))
                raise
            except AgentError as exc:
                if exc.code is not ErrorCode.STORAGE:
                    raise
                await _ingest_unsaved(scope, request, emit)
        emit(Result(request.id, {**(record.result or {}), "job": job_id}))

    async def _follow(self, job_id: str, request_id: str, emit: Emit) -> JobRecord:
        """Forward a job's progress as `progress` events; its final record, or its error."""
        async for record in self.workflows.watch(job_id):
            p = record.progress
            if p:
                emit(Progress(request_id, record.kind, p.get("done"), p.get("total"),
                              p.get("message")))
        if record.status is JobStatus.DONE:
            return record
        if record.status is JobStatus.CANCELLED:
            raise AgentError(ErrorCode.CANCELLED, f"job {job_id} was cancelled")
        error = record.last_error or {}
        code = ErrorCode(error.get("code", ErrorCode.INTERNAL.value))
        raise AgentError(code, error.get("message", f"job {job_id} failed"))

    async def _job(self, scope: Scope, job_id: str) -> JobRecord:
        """A job of this scope's tenant; another tenant's is `not_found`, as a missing one."""
        record = await self.workflows.get(job_id)
        if record.tenant != scope.tenant:
            raise AgentError(ErrorCode.NOT_FOUND, f"there is no job {job_id!r}")
        return record

    async def list(self, scope: Scope, request: JobsList, emit: Emit) -> None:
        jobs = await self.workflows.recent(request.limit, tenant=scope.tenant)
        emit(Result(request.id, {"jobs": [job.public() for job in jobs]}))

    async def get(self, scope: Scope, request: JobsGet, emit: Emit) -> None:
        emit(Result(request.id, (await self._job(scope, request.job)).public()))

    async def cancel(self, scope: Scope, request: JobsCancel, emit: Emit) -> None:
        await self._job(scope, request.job)  # (a job's tenant never changes)
        emit(Result(request.id, (await self.workflows.cancel(request.job)).public()))

    async def watch(self, scope: Scope, request: JobsWatch, emit: Emit) -> None:
        await self._job(scope, request.job)
        record = await self._follow(request.job, request.id, emit)
        emit(Result(request.id, record.public()))


async def _ingest_unsaved(scope: Scope, request: Ingest, emit: Emit) -> NoReturn:
    """The store refused the job (full quota): index in memory for this session, then
    report the storage failure."""

    def progress(done: int, total: int, message: str) -> None:
        emit(Progress(request.id, "ingest", done, total, message))

    error = await scope.library.ingest_unsaved(request.kb, request.documents, progress=progress)
    raise error or AgentError(ErrorCode.STORAGE, "the documents could not be saved")
