"""The ``harness.budget_account`` activity: a job's door to its budget account workflow.

Workflows cannot send updates to other workflows, so a job leases from and gives back to its
account (``workflows.account``) through this activity. The update id is derived from the job id, and
the account itself ignores a second lease or give-back of the same job, so a retried attempt never
holds or charges twice. An account that does not exist is the spec's fault: non-retryable.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.telemetry import Telemetry
from contracts.accounts import AccountCall, AccountView, LeaseReply, ReapReply, ReapRequest
from contracts.names import ACCOUNT_REAP_ACTIVITY, BUDGET_ACCOUNT_ACTIVITY, account_workflow_id

__all__ = ["BudgetAccountActivities", "account_update"]

T = TypeVar("T")
CONTINUING = "the account is continuing as new"  # workflows.account refuses updates with it meanwhile


async def account_update(
    handle: WorkflowHandle[Any, Any],
    name: str,
    arg: Any,
    result_type: type[T],
    id: str | None = None,
    rpc_timeout: timedelta | None = None,
) -> T:
    """Send update ``name`` to an account, again while it refuses because it is continuing as new.
    ``rpc_timeout`` bounds each attempt's wait for a worker to take it (none: wait for one)."""
    for attempt in range(50):
        try:
            result: T = await handle.execute_update(
                name, arg, id=id, result_type=result_type, rpc_timeout=rpc_timeout
            )
            return result
        except WorkflowUpdateFailedError as error:
            if CONTINUING not in str(error.cause) or attempt == 49:
                raise
            await asyncio.sleep(0.1)
    raise AssertionError("unreachable")


class BudgetAccountActivities:
    """Holds the Temporal client the account updates go through."""

    def __init__(self, client: Client, telemetry: Telemetry | None = None) -> None:
        self.client = client
        self.telemetry = telemetry if telemetry is not None else Telemetry()

    @activity.defn(name=BUDGET_ACCOUNT_ACTIVITY)
    async def budget_account(self, call: AccountCall) -> LeaseReply:
        """Send ``call``'s lease or give-back to account ``call.account``; the reply holds the account."""
        handle = self.client.get_workflow_handle(account_workflow_id(call.account))
        try:
            if call.lease is not None:
                reply = await account_update(
                    handle, "lease", call.lease, LeaseReply, id=f"lease-{call.lease.job_id}"
                )
                if not reply.granted:
                    self.telemetry.budget_refused(call.account, call.lease.job_id)
                return reply
            if call.give_back is not None:
                view = await account_update(
                    handle, "give_back", call.give_back, AccountView, id=f"give-back-{call.give_back.job_id}"
                )
                spent = call.give_back
                self.telemetry.account_spent(call.account, spent.job_id, spent.tokens_spent, spent.usd_spent)
                return LeaseReply(granted=True, view=view)
        except WorkflowUpdateFailedError as error:
            raise ApplicationError(str(error.cause), type="BadRequest", non_retryable=True) from error
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                raise ApplicationError(
                    f"no budget account {call.account!r} (create it: harness budget create {call.account})",
                    type="AccountNotFound",
                    non_retryable=True,
                ) from error
            raise
        raise ApplicationError("give a lease or a give_back", type="BadRequest", non_retryable=True)

    @activity.defn(name=ACCOUNT_REAP_ACTIVITY)
    async def budget_account_reap(self, request: ReapRequest) -> ReapReply:
        """Which of ``request.job_ids`` no longer run: their leases will never be given back."""
        ended = []
        for job_id in request.job_ids:
            try:
                described = await self.client.get_workflow_handle(job_id).describe()
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:
                    raise
                ended.append(job_id)
                continue
            if described.status != WorkflowExecutionStatus.RUNNING:
                ended.append(job_id)
        return ReapReply(ended=ended)
