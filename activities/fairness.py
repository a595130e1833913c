"""Token-weighted fairness, the worker's side: report each served model call, and write the weights.

``report_served`` is called by the model-call activity after a call of a job with a fairness key
(the task's merged priority carries it) when the worker has ``HARNESS_TOKEN_FAIRNESS=1``: it signals
the jobs queue's ``TokenFairness`` workflow (``workflows.fairness``), starting it if needed, in the
background (a lost report only delays a weight). ``set_fairness_weights`` is the activity that
workflow runs to write the weights (``UpdateTaskQueueConfig``'s fairness weight overrides).
"""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.workflowservice.v1 import UpdateTaskQueueConfigRequest
from temporalio.client import Client

from activities.queue_limits import set_limit
from contracts.fairness import FairnessState, ServedCall, SetRateRequest, SetWeightsRequest
from contracts.models import ProviderLimits
from contracts.names import (
    SET_FAIRNESS_WEIGHTS_ACTIVITY,
    SET_QUEUE_RATE_ACTIVITY,
    TOKEN_FAIRNESS_WORKFLOW,
    fairness_workflow_id,
    jobs_queue_of,
)

__all__ = ["FairnessActivities", "report_served"]

_log = logging.getLogger(__name__)


def report_served(
    client: Client,
    queue: str,
    tokens: int,
    running: set[asyncio.Task[None]],
    *,
    by_tenant: bool,
    limits: ProviderLimits | None,
) -> None:
    """Report, in the background, that the running activity's call of ``tokens`` was served on model
    queue ``queue``: for token fairness (``by_tenant``) if its task has a fairness key, and for a
    provider's ``tpm`` if ``limits`` has one. ``running`` keeps the report's task until it ends (the
    event loop holds only weak references)."""
    priority = activity.info().priority
    tenant = priority.fairness_key if by_tenant and priority.fairness_key else None
    limits = limits if limits is not None and limits.tpm is not None else None
    if tenant is None and limits is None:
        return
    call = ServedCall(
        queue=queue, tenant=tenant, weight=priority.fairness_weight or 1.0, tokens=tokens, limits=limits
    )
    task = asyncio.get_running_loop().create_task(_signal(client, jobs_queue_of(queue), call))
    running.add(task)
    task.add_done_callback(running.discard)


async def _signal(client: Client, jobs_queue: str, call: ServedCall) -> None:
    try:
        await client.start_workflow(
            TOKEN_FAIRNESS_WORKFLOW,
            FairnessState(),
            id=fairness_workflow_id(jobs_queue),
            task_queue=jobs_queue,
            start_signal="served",
            start_signal_args=[call],
        )
    except Exception:  # advisory: the next call reports again
        _log.warning("could not report a served call of tenant %r", call.tenant, exc_info=True)


class FairnessActivities:
    """The activities that write fairness weights and tpm-held rates, over the worker's client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @activity.defn(name=SET_FAIRNESS_WEIGHTS_ACTIVITY)
    async def set_fairness_weights(self, request: SetWeightsRequest) -> None:
        """Set (and unset) tenants' fairness weight overrides on activity task queue ``request.queue``."""
        await self.client.workflow_service.update_task_queue_config(
            UpdateTaskQueueConfigRequest(
                namespace=self.client.namespace,
                identity=self.client.identity,
                task_queue=request.queue,
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
                set_fairness_weight_overrides=request.weights,
                unset_fairness_weight_overrides=request.unset,
            )
        )

    @activity.defn(name=SET_QUEUE_RATE_ACTIVITY)
    async def set_queue_rate(self, request: SetRateRequest) -> None:
        """Set a model queue's request rate (and per-tenant default), held for a provider's tpm."""
        await set_limit(self.client, request.queue, request.limits, reason="tokens per minute")
