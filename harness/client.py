"""Client helpers: connect with the project's data converter, start jobs, read their state."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from contracts import search_attributes as sa
from contracts.jobs import JobProgress, JobResult, JobStatus, LedgerTotals
from contracts.spec import JobSpec
from worker import task_queue
from workflows import WORKFLOW_FOR_MODE

T = TypeVar("T")


def new_job_id(spec: JobSpec) -> str:
    """The spec's id, or a readable fresh one."""
    if spec.id:
        return spec.id
    stem = (spec.name or spec.mode).lower().replace(" ", "-")[:40]
    return f"{stem}-{uuid.uuid4().hex[:8]}"


async def start_job(
    client: Client, spec: JobSpec, queue: str | None = None
) -> WorkflowHandle[Any, JobResult]:
    """Start ``spec`` as a workflow (workflow id = job id) and return its handle."""
    workflow_name = WORKFLOW_FOR_MODE.get(spec.mode)
    if workflow_name is None:
        raise ValueError(f"mode {spec.mode!r} is not available yet; available: {sorted(WORKFLOW_FOR_MODE)}")
    job_id = new_job_id(spec)
    spec = spec.model_copy(update={"id": job_id})
    return await client.start_workflow(
        workflow_name,
        spec,
        id=job_id,
        task_queue=queue or task_queue(),
        result_type=JobResult,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.MODE, spec.mode),
                SearchAttributePair(sa.STATUS, JobStatus.starting.value),
                SearchAttributePair(sa.TOKENS, 0),
                SearchAttributePair(sa.COST_USD, 0.0),
            ]
        ),
        # The memo is not encrypted by a payload codec: names only, never prompt text.
        memo={"name": spec.name, "mode": spec.mode, "agents": [agent.name for agent in spec.agents]},
    )


async def job_status(client: Client, job_id: str) -> JobProgress:
    """The ``status`` query of a job; for an ended job with no worker to answer, read its result."""
    handle = client.get_workflow_handle(job_id, result_type=JobResult)
    progress = await _query_live(handle, "status", JobProgress)
    if progress is not None:
        return progress
    try:
        result = await handle.result()
    except WorkflowFailureError as error:
        return JobProgress(job_id=job_id, mode="?", status=JobStatus.failed, detail=str(error.cause or error))
    return JobProgress(
        job_id=job_id,
        mode=result.mode,
        status=JobStatus.finished,
        steps_done=len(result.outputs),
        tokens=result.ledger.usage.total_tokens,
        cost_usd=result.ledger.cost_usd,
        stop_reason=result.stop_reason,
        detail=result.explanation,
        evidence=result.evidence,
    )


async def job_ledger(client: Client, job_id: str) -> LedgerTotals:
    """The ``ledger`` query of a job; for an ended job with no worker to answer, its result's ledger."""
    handle = client.get_workflow_handle(job_id, result_type=JobResult)
    totals = await _query_live(handle, "ledger", LedgerTotals)
    if totals is not None:
        return totals
    result: JobResult = await handle.result()
    return result.ledger


async def _query_live(handle: WorkflowHandle[Any, JobResult], query: str, result_type: type[T]) -> T | None:
    """A query's answer, or None when the job has ended and no worker answers (read its result then).

    A running job with no worker polling raises: say so rather than guess.
    """
    try:
        answer: T = await handle.query(query, result_type=result_type, rpc_timeout=timedelta(seconds=5))
        return answer
    except RPCError:
        description = await handle.describe()
        if description.status in (None, WorkflowExecutionStatus.RUNNING):
            raise
    return None


async def job_result(client: Client, job_id: str) -> JobResult:
    """Wait for a job's result."""
    result: JobResult = await client.get_workflow_handle(job_id, result_type=JobResult).result()
    return result
