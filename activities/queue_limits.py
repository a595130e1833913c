"""Provider rate limits held cluster-wide: the rate limit of each provider's model-call task queue.

A provider with ``rps`` in the catalog (``activities.catalog.ProviderLimits``) gets a task queue of
its own (``contracts.names.models_queue``); Temporal's matching service dispatches that queue's tasks
at most at the queue's rate, to every worker of the cluster together, so the limit holds however
many workers poll. It is set with ``UpdateTaskQueueConfig`` (what ``temporal task-queue config set
--task-queue-type activity --queue-rps-limit R --fairness-key-rps-limit-default R`` does), when a
worker starts and by ``harness limits set``.

Temporal's limiter lets a burst through when a backlog meets an idle queue: on the dev server, about
one more second's worth in the first second (9 tasks in the first second at 4.17/s, 26 in the
busiest 5 s of a 200-task burst). So the queue's rate is the provider's limit times
``BURST_WINDOW_S / (BURST_WINDOW_S + BURST_S)``: with that start-up burst, no ``BURST_WINDOW_S``-
second window sees more requests than the provider allows (5 rps -> a queue rate of 3.846, about 24
requests in the busiest 5 s).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import RateLimit, TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest, UpdateTaskQueueConfigRequest
from temporalio.client import Client

from activities.catalog import ProviderLimits

__all__ = ["BURST_S", "BURST_WINDOW_S", "QueueLimit", "apply_limits", "queue_rate", "read_limit", "set_limit"]

BURST_WINDOW_S = 5.0
"""The window the provider's limit must hold over, start-up burst included (see the module doc)."""
BURST_S = 1.5
"""Seconds' worth of tasks the limiter lets through beyond its rate at start, with a margin."""


def queue_rate(rps: float) -> float:
    """The task queue's rate for a provider limit of ``rps``, leaving room for the start-up burst."""
    return math.floor(rps * BURST_WINDOW_S / (BURST_WINDOW_S + BURST_S) * 1000) / 1000


@dataclass(frozen=True)
class QueueLimit:
    """A model queue's rate limit as Temporal holds it (None: unlimited)."""

    queue: str
    rps: float | None
    tenant_rps: float | None


async def set_limit(
    client: Client, queue: str, limits: ProviderLimits | None, reason: str = "harness limits"
) -> None:
    """Set (``limits``) or lift (None) the rate limit of activity task queue ``queue``: the whole
    queue's, and the default per fairness key (tenant), scaled by each key's weight."""
    rate = RateLimit(requests_per_second=queue_rate(limits.rps)) if limits is not None else None
    tenant = (
        RateLimit(requests_per_second=queue_rate(limits.tenant_rps))
        if limits is not None and limits.tenant_rps is not None
        else None
    )
    update = UpdateTaskQueueConfigRequest.RateLimitUpdate
    await client.workflow_service.update_task_queue_config(
        UpdateTaskQueueConfigRequest(
            namespace=client.namespace,
            identity=client.identity,
            task_queue=queue,
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            update_queue_rate_limit=update(rate_limit=rate, reason=reason),
            update_fairness_key_rate_limit_default=update(rate_limit=tenant, reason=reason),
        )
    )


async def apply_limits(client: Client, limits: Mapping[str, ProviderLimits]) -> None:
    """Set each rate-limited queue's limit (a worker starting: the catalogs' limits, by queue)."""
    for queue, limit in sorted(limits.items()):
        await set_limit(client, queue, limit, reason="catalog limit")


async def read_limit(client: Client, queue: str) -> QueueLimit:
    """The rate limit Temporal holds for activity task queue ``queue``."""
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            report_config=True,
        )
    )
    config = described.config
    rate = config.queue_rate_limit.rate_limit if config.HasField("queue_rate_limit") else None
    tenant = (
        config.fairness_keys_rate_limit_default.rate_limit
        if config.HasField("fairness_keys_rate_limit_default")
        else None
    )
    return QueueLimit(
        queue=queue,
        rps=rate.requests_per_second if rate is not None and rate.ByteSize() else None,
        tenant_rps=tenant.requests_per_second if tenant is not None and tenant.ByteSize() else None,
    )
