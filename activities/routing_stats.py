"""The ``harness.routing_stats`` activity: a job's door to the shared routing-stats workflow.

Workflows cannot send updates to other workflows, nor start them, so a job reads and records
learned pass rates through this activity. It starts the ``RoutingStats`` workflow when it is not
running (``USE_EXISTING`` makes concurrent starts safe) on this worker's task queue, then sends the
``record`` update and returns the stats after it. The batch key doubles as the update id, and the
workflow ignores keys it has counted, so a retried attempt never counts twice.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError

from contracts.names import ROUTING_STATS_ACTIVITY, ROUTING_STATS_WORKFLOW_ID
from contracts.routing import RoutingOutcomes, RoutingStatsState
from policies.routing import RoutingStats

__all__ = ["RoutingStatsActivities", "ensure_stats_workflow"]


async def ensure_stats_workflow(client: Client, workflow_id: str, task_queue: str) -> None:
    """Start the routing-stats workflow ``workflow_id`` unless it is running."""
    await client.start_workflow(
        "RoutingStats",
        RoutingStatsState(),
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )


class RoutingStatsActivities:
    """Holds the Temporal client; ``workflow_id`` names the stats workflow (one per namespace)."""

    def __init__(self, client: Client, workflow_id: str = ROUTING_STATS_WORKFLOW_ID) -> None:
        self.client = client
        self.workflow_id = workflow_id

    @activity.defn(name=ROUTING_STATS_ACTIVITY)
    async def routing_stats(self, batch: RoutingOutcomes) -> RoutingStats:
        """Record ``batch`` (possibly empty: a read) and return the learned stats."""
        await ensure_stats_workflow(self.client, self.workflow_id, activity.info().task_queue)
        handle = self.client.get_workflow_handle(self.workflow_id)
        try:
            stats: RoutingStats = await handle.execute_update(
                "record", batch, id=batch.key or None, result_type=RoutingStats
            )
        except WorkflowUpdateFailedError as error:
            # The validator refused the batch: a bug in the caller, not the world.
            raise ApplicationError(str(error.cause), type="BadRequest", non_retryable=True) from error
        return stats
