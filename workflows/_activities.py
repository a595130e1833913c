"""Every activity a workflow calls, as a typed stub that carries its options: defined once, here.

A stub names the activity (``contracts.names``), its request and result types, and how it is
called: timeouts, heartbeat, retry policy. Workflows call ``STUB.run(request, summary=...)`` (or
``start`` for a handle they may cancel), so the type checker sees the request and the result, and a
timeout or retry rule is changed in one place for every caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, Literal, TypeVar

from temporalio import workflow
from temporalio.common import Priority, RetryPolicy

with workflow.unsafe.imports_passed_through():
    from contracts.accounts import AccountCall, LeaseReply, ReapReply, ReapRequest
    from contracts.board import BoardReply, BoardRequest
    from contracts.fairness import SetRateRequest, SetWeightsRequest
    from contracts.models import ModelCallRequest, ModelCallResult, ResolveModelsRequest, ResolveModelsResult
    from contracts.names import (
        ACCOUNT_REAP_ACTIVITY,
        BUDGET_ACCOUNT_ACTIVITY,
        LIST_TOOLS_ACTIVITY,
        MODEL_CALL_ACTIVITY,
        RESOLVE_MODELS_ACTIVITY,
        ROUTING_STATS_ACTIVITY,
        RUN_CHECK_ACTIVITY,
        SET_FAIRNESS_WEIGHTS_ACTIVITY,
        SET_QUEUE_RATE_ACTIVITY,
        TEAM_BOARD_ACTIVITY,
        TOOL_CALL_ACTIVITY,
        models_queue,
        tools_queue,
    )
    from contracts.routing import RoutingOutcomes
    from contracts.tools import ListToolsRequest, ListToolsResult, ToolCallRequest, ToolCallResult
    from policies.goals import CheckOutcome, RunCheckRequest
    from policies.routing import RoutingStats

__all__ = [
    "ACCOUNT_REAP",
    "BUDGET_ACCOUNT",
    "LIST_TOOLS",
    "MODEL_CALL",
    "NON_RETRYABLE_ERRORS",
    "QUEUES_BY_ROLE_PATCH",
    "RESOLVE_MODELS",
    "ROUTING_STATS",
    "RUN_CHECK",
    "SET_FAIRNESS_WEIGHTS",
    "SET_QUEUE_RATE",
    "TEAM_BOARD",
    "TOOL_CALL",
    "ActivityStub",
    "role_queue",
]

Req = TypeVar("Req")
Res = TypeVar("Res")


@dataclass(frozen=True)
class ActivityStub(Generic[Req, Res]):
    """One activity as workflows call it: its name, its result type and its call options."""

    name: str
    result_type: type[Res]
    start_to_close_timeout: timedelta
    retry_policy: RetryPolicy | None = None
    heartbeat_timeout: timedelta | None = None
    schedule_to_close_timeout: timedelta | None = None
    cancellation_type: workflow.ActivityCancellationType = workflow.ActivityCancellationType.TRY_CANCEL

    def start(
        self,
        request: Req,
        *,
        summary: str,
        start_to_close_timeout: timedelta | None = None,
        priority: Priority = Priority.default,
        task_queue: str | None = None,
    ) -> workflow.ActivityHandle[Res]:
        """Schedule the activity and return its handle (cancel it to cancel the activity); a call
        whose work has its own time limit (a tool's) may give its own ``start_to_close_timeout``.

        ``priority``: the job's (``JobWorkflow.task_priority``); unset fields inherit the workflow's
        own (its fairness key and weight). ``task_queue``: another queue than the workflow's (a rate-
        limited model queue, ``contracts.names.model_queue``)."""
        return workflow.start_activity(
            self.name,
            request,
            result_type=self.result_type,
            start_to_close_timeout=start_to_close_timeout or self.start_to_close_timeout,
            schedule_to_close_timeout=self.schedule_to_close_timeout,
            heartbeat_timeout=self.heartbeat_timeout,
            retry_policy=self.retry_policy,
            cancellation_type=self.cancellation_type,
            summary=summary,
            priority=priority,
            task_queue=task_queue,
        )

    async def run(
        self,
        request: Req,
        *,
        summary: str,
        priority: Priority = Priority.default,
        task_queue: str | None = None,
    ) -> Res:
        """Run the activity to its result (``ActivityError`` once its retries are spent)."""
        return await self.start(request, summary=summary, priority=priority, task_queue=task_queue)


QUEUES_BY_ROLE_PATCH = "harness-queues-by-role"
"""``workflow.patched`` id of model and tool calls on their roles' own task queues: a job that
started before (its history schedules them on its own queue) replays, and goes on, as it began."""


def role_queue(role: Literal["models", "tools"], limited: str | None = None, *, shared: bool) -> str | None:
    """The task queue of a model or tool call, derived from the job's queue: for a provider or MCP
    server ``limited`` with a rate limit of its own (``ModelInfo.own_queue``, ``ToolDef.own_queue``),
    that one's; else, when the deployment splits roles (``shared``, ``JobState.role_queues``), its
    role's (``contracts.names.ROLES``); else None, the job's own queue, where the worker running the
    job runs the call at once (an eager activity). None too for a job that started before roles had
    queues (its history replays as it began)."""
    if limited is None and not shared:
        return None
    if not workflow.patched(QUEUES_BY_ROLE_PATCH):
        return None
    queue = workflow.info().task_queue
    return models_queue(queue, limited) if role == "models" else tools_queue(queue, limited)


# Errors that are the input's fault, not the world's: retrying cannot help.
NON_RETRYABLE_ERRORS = [
    "BadRequest",
    "AuthenticationFailed",
    "PermissionDenied",
    "ModelNotFound",
    "UnprocessableRequest",
    "UnknownPrice",
    "UnknownModel",
    "StructuredOutputInvalid",
]
_PROVIDER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=8,
    non_retryable_error_types=NON_RETRYABLE_ERRORS,
)
# A model call retries without a count: an attempt that dies with its worker (heartbeat timeout) is
# not the provider's fault. Provider errors keep their limit of 8 inside the activity, counted in the
# call's receipt (activities/receipts.py, MAX_PROVIDER_ERRORS), and the schedule-to-close timeout
# below bounds a call that no worker ever finishes.
_MODEL_CALL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
    non_retryable_error_types=NON_RETRYABLE_ERRORS,
)
_ACCOUNT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
    non_retryable_error_types=["AccountNotFound", "BadRequest"],
)

MODEL_CALL: ActivityStub[ModelCallRequest, ModelCallResult] = ActivityStub(
    MODEL_CALL_ACTIVITY,
    ModelCallResult,
    start_to_close_timeout=timedelta(minutes=10),
    # Worker losses retry until the job's deadline cancels the call, or for a day at most.
    schedule_to_close_timeout=timedelta(hours=24),
    retry_policy=_MODEL_CALL_RETRY,
    # The activity heartbeats every 0.25 s and the worker forwards a heartbeat at least every 0.5 s
    # (max_heartbeat_throttle_interval in worker.py, whatever this timeout): a cancel reaches the
    # activity within about a second. The timeout only decides when a silent worker counts as lost;
    # 10 s leaves room for a loaded host (at 2 s, 69 of 1,400 calls on 2 busy cores were re-run).
    heartbeat_timeout=timedelta(seconds=10),
    # A cancelled call reports what it served (partial text, usage) before the workflow goes on.
    cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
)
RESOLVE_MODELS: ActivityStub[ResolveModelsRequest, ResolveModelsResult] = ActivityStub(
    RESOLVE_MODELS_ACTIVITY,
    ResolveModelsResult,
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=_PROVIDER_RETRY,
)
RUN_CHECK: ActivityStub[RunCheckRequest, CheckOutcome] = ActivityStub(
    RUN_CHECK_ACTIVITY, CheckOutcome, start_to_close_timeout=timedelta(minutes=2)
)
BUDGET_ACCOUNT: ActivityStub[AccountCall, LeaseReply] = ActivityStub(
    BUDGET_ACCOUNT_ACTIVITY,
    LeaseReply,
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=_ACCOUNT_RETRY,
)
ACCOUNT_REAP: ActivityStub[ReapRequest, ReapReply] = ActivityStub(
    ACCOUNT_REAP_ACTIVITY,
    ReapReply,
    start_to_close_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=5),
)
ROUTING_STATS: ActivityStub[RoutingOutcomes, RoutingStats] = ActivityStub(
    ROUTING_STATS_ACTIVITY,
    RoutingStats,
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3),
)
TEAM_BOARD: ActivityStub[BoardRequest, BoardReply] = ActivityStub(
    TEAM_BOARD_ACTIVITY,
    BoardReply,
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=10),
)
SET_FAIRNESS_WEIGHTS: ActivityStub[SetWeightsRequest, None] = ActivityStub(
    SET_FAIRNESS_WEIGHTS_ACTIVITY,
    type(None),
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10)),
)
SET_QUEUE_RATE: ActivityStub[SetRateRequest, None] = ActivityStub(
    SET_QUEUE_RATE_ACTIVITY,
    type(None),
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10)),
)
LIST_TOOLS: ActivityStub[ListToolsRequest, ListToolsResult] = ActivityStub(
    LIST_TOOLS_ACTIVITY,
    ListToolsResult,
    # Starting an MCP server (a subprocess, or a session over HTTP) can take a few seconds.
    start_to_close_timeout=timedelta(seconds=60),
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=10),
        maximum_attempts=5,
        non_retryable_error_types=["UnknownTool"],
    ),
)
TOOL_CALL: ActivityStub[ToolCallRequest, ToolCallResult] = ActivityStub(
    TOOL_CALL_ACTIVITY,
    ToolCallResult,
    # Each call passes its tool's own limit (plus a margin); this is the default.
    start_to_close_timeout=timedelta(minutes=2),
    # The same policy for every tool: a tool that is not idempotent is never run twice because the
    # activity itself refuses a second attempt ("not retried"), which is then recorded as such.
    retry_policy=RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=10),
        maximum_attempts=3,
    ),
    # The activity heartbeats about every second while the tool runs: a cancel (interrupt, abort)
    # reaches it, and a worker that dies mid-call is noticed within this long.
    heartbeat_timeout=timedelta(seconds=5),
    # A cancelled call reports back (its record says cancelled) before the workflow goes on.
    cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
)
