"""Client helpers: connect with the project's data converter, start jobs, read their state."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from google.protobuf.field_mask_pb2 import FieldMask
from temporalio.api.common.v1 import Priority as PriorityProto
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflow.v1 import WorkflowExecutionOptions
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, UpdateWorkflowExecutionOptionsRequest
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import Priority, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import CancelledError, TerminatedError
from temporalio.exceptions import TimeoutError as TemporalTimeout
from temporalio.service import RPCError, RPCStatusCode

from activities.connect import task_queue
from contracts import search_attributes as sa
from contracts.display import job_details, job_summary
from contracts.jobs import JobProgress, JobResult, JobStatus, LedgerTotals
from contracts.names import ACCOUNT_WEIGHT_MEMO, account_workflow_id, job_id_stem
from contracts.spec import JobSpec, priority_key
from workflows import WORKFLOW_FOR_MODE

T = TypeVar("T")
QUERY_TIMEOUT = timedelta(seconds=5)
UPDATE_TIMEOUT = timedelta(seconds=10)
"""How long an update waits for a worker to take it, while one is listed as polling its queue."""


class NoSuchJob(LookupError):
    """No workflow has the job id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id!r} (no workflow has that id)")


class NoResult(RuntimeError):
    """A job that did not end as a harness job has no result: Temporal ended it (terminated, timed
    out, cancelled) or its workflow failed."""

    def __init__(self, job_id: str, error: WorkflowFailureError) -> None:
        super().__init__(f"job {job_id!r} has no result: {ended_how(error)}")


def ended_how(error: WorkflowFailureError) -> str:
    """How a workflow that did not end as a harness job ended, in words."""
    cause = error.cause
    if isinstance(cause, TerminatedError):
        return f"it was terminated ({cause.message or 'no reason given'})"
    if isinstance(cause, TemporalTimeout):
        return "it timed out in Temporal"
    if isinstance(cause, CancelledError):
        return "it was cancelled through Temporal"
    return f"its workflow failed: {cause or error}"


class NoWorker(RuntimeError):
    """A query or update, which a worker answers, found none on the workflow's task queue."""

    def __init__(self, queue: str, doing: str, how: str) -> None:
        super().__init__(
            f"no worker answered on task queue {queue!r} ({how}), and {doing} needs one: "
            "is a worker running? Start `harness worker` (with the same HARNESS_TASK_QUEUE)"
        )


def worker_missing(error: RPCError) -> str | None:
    """How Temporal said that no worker took a query (or an update), or None for another failure.
    The same condition comes back three ways, depending on how long ago the last worker polled:
    the server's own query timeout (DEADLINE_EXCEEDED), the client's (CANCELLED), or, once the
    server has seen no poll for a while though it still lists the gone worker's pollers,
    FAILED_PRECONDITION "no poller seen for task queue recently"."""
    if error.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
        return f"the query timed out after {QUERY_TIMEOUT.total_seconds():g} s"
    if error.status is RPCStatusCode.FAILED_PRECONDITION and "poller" in error.message.lower():
        return "Temporal has seen no poll on it recently"
    return None


def new_job_id(spec: JobSpec) -> str:
    """The spec's id, or a fresh one the workflow accepts (``contracts.names.JOB_ID``): the name made
    into an id (``job_id_stem``; the mode when nothing of it is left) and a random suffix. The name
    itself stays the job's display name (the memo's ``name``)."""
    if spec.id:
        return spec.id
    return f"{job_id_stem(spec.name) or spec.mode}-{uuid.uuid4().hex[:8]}"


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
        priority=await job_priority(client, spec),
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
        # What the Web UI shows atop the job: user metadata, which the codec seals like the spec.
        static_summary=job_summary(spec),
        static_details=job_details(spec),
    )


async def job_priority(client: Client, spec: JobSpec) -> Priority:
    """The Temporal priority a job starts with, inherited by everything it starts: the priority key
    of its priority (``contracts.spec.priority_key``), its tenant (or account) as fairness key, and
    the tenant's weight: the spec's ``tenant_weight``, else the account's (``budget create
    --weight``), else 1."""
    key = spec.fairness_key()
    weight = spec.tenant_weight
    if key is not None and weight is None and spec.account is not None:
        weight = await account_weight(client, spec.account)
    return Priority(
        priority_key=priority_key(spec.priority),
        fairness_key=key,
        fairness_weight=(weight or 1.0) if key is not None else None,
    )


async def account_weight(client: Client, account: str) -> float | None:
    """Account ``account``'s fairness weight, from its workflow's memo (no worker needed); None for an
    account that does not exist (the job then ends ``failed`` at its lease, naming it) or has none."""
    try:
        described = await client.get_workflow_handle(account_workflow_id(account)).describe()
        weight = await described.memo_value(ACCOUNT_WEIGHT_MEMO, None)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    return float(weight) if isinstance(weight, (int, float)) else None


async def set_job_priority(client: Client, job_id: str, priority: int) -> int:
    """Give a running or queued job's workflow the priority key of job priority ``priority`` (its
    fairness key and weight kept), through ``UpdateWorkflowExecutionOptions``: no worker needed, and
    the server orders the job's queued tasks by it at once. Returns the key. The job's own
    ``set_priority`` update (sent after this by ``harness set-priority``) carries the new priority
    to what it starts next."""
    handle = client.get_workflow_handle(job_id)
    current = (await describe_job(handle)).raw_description.workflow_execution_info.priority
    key = priority_key(priority)
    options = WorkflowExecutionOptions(
        priority=PriorityProto(
            priority_key=key, fairness_key=current.fairness_key, fairness_weight=current.fairness_weight
        )
    )
    await client.workflow_service.update_workflow_execution_options(
        UpdateWorkflowExecutionOptionsRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=job_id),
            workflow_execution_options=options,
            update_mask=FieldMask(paths=["priority"]),
            identity=client.identity,
        )
    )
    return key


async def job_status(client: Client, job_id: str) -> JobProgress:
    """The ``status`` query of a job; for an ended job with no worker to answer, read its result."""
    handle = client.get_workflow_handle(job_id, result_type=JobResult)
    progress = await _query_live(client, handle, "status", JobProgress)
    if progress is not None:
        return progress
    try:
        result = await handle.result()
    except WorkflowFailureError as error:
        return JobProgress(job_id=job_id, mode="?", status=JobStatus.failed, detail=ended_how(error))
    progress = JobProgress(
        job_id=job_id,
        mode=result.mode,
        status=JobStatus.finished,
        steps_done=len(result.outputs) if result.steps_done is None else result.steps_done,
        steps_total=result.steps_total,
        tokens=result.ledger.usage.total_tokens,
        cost_usd=result.ledger.cost_usd,
        stop_reason=result.stop_reason,
        detail=result.explanation,
        evidence=result.evidence,
        gates=result.gates,
        interrupts=result.interrupts,
        tool_calls=result.tool_calls,
        tool_calls_refused=result.tool_calls_refused,
    )
    if result.priority is not None:  # an older result did not record it: the default stands
        progress.priority = result.priority
    return progress


async def job_ledger(client: Client, job_id: str) -> LedgerTotals:
    """The ``ledger`` query of a job; for an ended job with no worker to answer, its result's ledger."""
    handle = client.get_workflow_handle(job_id, result_type=JobResult)
    totals = await _query_live(client, handle, "ledger", LedgerTotals)
    if totals is not None:
        return totals
    return (await _result(handle)).ledger


async def _query_live(
    client: Client, handle: WorkflowHandle[Any, JobResult], query: str, result_type: type[T]
) -> T | None:
    """A running job's answer to ``query``, or None for an ended job (read its result then, at
    once: no worker needed). ``NoSuchJob`` for an unknown id, ``NoWorker`` for a running job that
    no worker polls for."""
    description = await describe_job(handle)
    if description.status not in (None, WorkflowExecutionStatus.RUNNING):
        return None
    return await query_job(client, handle.id, query, result_type)


async def describe_job(handle: WorkflowHandle[Any, Any]) -> WorkflowExecutionDescription:
    try:
        return await handle.describe()
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise NoSuchJob(handle.id) from None
        raise


async def has_pollers(client: Client, queue: str) -> bool:
    """Whether a worker polls ``queue`` for workflow tasks (and so can answer queries and updates).
    A worker that stopped is still listed for a few minutes."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    described = await client.workflow_service.describe_task_queue(request, timeout=QUERY_TIMEOUT)
    return bool(described.pollers)


async def query_job(client: Client, job_id: str, query: str, result_type: type[T]) -> T:
    """Query a job (running or ended: a worker answers, replaying an ended one). ``NoSuchJob`` for
    an unknown id; ``NoWorker`` when no worker answers (see ``query_workflow``)."""
    try:
        return await query_workflow(client, job_id, query, result_type, what=f"a job's {query}")
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise NoSuchJob(job_id) from None
        raise


async def query_workflow(
    client: Client, workflow_id: str, query: str, result_type: type[T], *, what: str
) -> T:
    """Query a workflow, saying ``NoWorker`` (naming its task queue and ``what`` was being read)
    when no worker answers (see ``_with_worker``). Other failures, a NOT_FOUND among them,
    propagate as ``RPCError``."""
    handle = client.get_workflow_handle(workflow_id)

    async def ask() -> T:
        answer: T = await handle.query(query, result_type=result_type, rpc_timeout=QUERY_TIMEOUT)
        return answer

    return await _with_worker(client, handle, f"reading {what}", ask, ended_needs_worker=True)


async def update_job(client: Client, job_id: str, update: str, arg: Any, result_type: type[T]) -> T:
    """Send update ``update`` to a job and return its answer; ``NoWorker`` when no worker takes it
    (see ``_with_worker``). Other failures (refused, an ended or unknown job) propagate."""
    handle = client.get_workflow_handle(job_id)

    async def send() -> T:
        args = [] if arg is None else [arg]
        answer: T = await handle.execute_update(
            update, args=args, result_type=result_type, rpc_timeout=UPDATE_TIMEOUT
        )
        return answer

    return await _with_worker(client, handle, f"the {update} update to job {job_id!r}", send)


async def update_account(client: Client, name: str, update: str, arg: Any, result_type: type[T]) -> T:
    """Send update ``update`` to budget account ``name`` (retried while it continues as new) and
    return its answer; ``NoWorker`` when no worker takes it (see ``_with_worker``). Other failures
    (refused, NOT_FOUND for an account that does not exist) propagate."""
    from activities.budget_account import account_update  # the one retry of an account's updates

    handle = client.get_workflow_handle(account_workflow_id(name))

    async def send() -> T:
        return await account_update(handle, update, arg, result_type, rpc_timeout=UPDATE_TIMEOUT)

    return await _with_worker(client, handle, f"the {update} of account {name!r}", send)


async def _with_worker(
    client: Client,
    handle: WorkflowHandle[Any, Any],
    doing: str,
    call: Callable[[], Awaitable[T]],
    *,
    ended_needs_worker: bool = False,
) -> T:
    """Run ``call``, a query or update of ``handle``'s workflow that a worker must answer, saying
    ``NoWorker`` (naming the workflow's task queue and what is ``doing``) when none does: at once
    when no worker polls the queue (nothing is sent), else however Temporal reports that none
    took it (``worker_missing``), or after ``UPDATE_TIMEOUT`` for an update. For a workflow that
    has ended, a query needs a worker (to replay it: ``ended_needs_worker``), an update does not
    (Temporal refuses it)."""
    description = await handle.describe()
    queue = description.task_queue
    running = description.status in (None, WorkflowExecutionStatus.RUNNING)
    if (running or ended_needs_worker) and not await has_pollers(client, queue):
        raise NoWorker(queue, doing, "none polls it")
    try:
        return await call()
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        waited = f"none took it within {UPDATE_TIMEOUT.total_seconds():g} s"
        how = f"{waited}; it may still apply once one runs: look before sending it again"
        raise NoWorker(queue, doing, how) from None
    except RPCError as error:
        missing = worker_missing(error)
        if missing is None:
            raise
        raise NoWorker(queue, doing, missing) from None


async def job_result(client: Client, job_id: str) -> JobResult:
    """Wait for a job's result; ``NoResult`` for a job that did not end as a harness job."""
    return await _result(client.get_workflow_handle(job_id, result_type=JobResult))


async def _result(handle: WorkflowHandle[Any, JobResult]) -> JobResult:
    try:
        return await handle.result()
    except WorkflowFailureError as error:
        raise NoResult(handle.id, error) from None
    except RPCError as error:
        if error.status is RPCStatusCode.NOT_FOUND:
            raise NoSuchJob(handle.id) from None
        raise


@dataclass(frozen=True)
class JobRow:
    """One job as ``harness list`` shows it: what its search attributes and execution info say."""

    job_id: str
    mode: str
    status: str
    """The job's own status (``HarnessStatus``), or Temporal's when the job could not set one
    (terminated, timed out, a failed start)."""
    stop_reason: str | None
    tokens: int | None
    cost_usd: float | None
    started: datetime | None
    closed: datetime | None


CHILD_MODES = ("subtask", "team-member")
"""The modes of child jobs (a delegation's subtasks, a team's members): left out unless asked for."""


def jobs_query(status: str | None = None, mode: str | None = None, children: bool = False) -> str:
    """The visibility query for harness's jobs, filtered by status and mode (values as the search
    attributes hold them; quoted here, so they cannot widen the query)."""
    parts = ["HarnessMode IS NOT NULL"]
    for key, value in ((sa.STATUS.name, status), (sa.MODE.name, mode)):
        if value is not None:
            parts.append(f"{key} = {_quoted(value)}")
    if not children and mode is None:
        parts.append(f"{sa.MODE.name} NOT IN ({', '.join(_quoted(m) for m in CHILD_MODES)})")
    return " AND ".join(parts)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def list_jobs(
    client: Client,
    status: str | None = None,
    mode: str | None = None,
    limit: int = 20,
    children: bool = False,
) -> list[JobRow]:
    """The most recently started jobs first, at most ``limit``, from the server's visibility store."""
    rows: list[JobRow] = []
    query = jobs_query(status, mode, children)
    async for execution in client.list_workflows(query, limit=limit):
        attributes = execution.typed_search_attributes
        running = execution.status is WorkflowExecutionStatus.RUNNING
        own = attributes.get(sa.STATUS)
        if execution.status in (None, WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED):
            shown = own or "?"
        else:  # ended by Temporal, not by the job: its last own status would mislead
            shown = execution.status.name.lower()
        rows.append(
            JobRow(
                job_id=execution.id,
                mode=attributes.get(sa.MODE) or "?",
                status=shown,
                stop_reason=attributes.get(sa.STOP_REASON),
                tokens=attributes.get(sa.TOKENS),
                cost_usd=attributes.get(sa.COST_USD),
                started=execution.start_time,
                closed=None if running else execution.close_time,
            )
        )
    return rows
