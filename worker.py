"""The composition root: connects, registers every workflow and activity, runs.

``python worker.py`` (or ``harness worker``) runs a worker against the configured Temporal
(``TEMPORAL_*`` environment); model-provider keys are read here, from this process's environment,
and never travel in workflow inputs or history.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.checks import CheckActivities
from activities.model_call import ModelCallActivities
from activities.routing_stats import RoutingStatsActivities
from activities.team_board import TeamBoardActivities
from harness.checks import load_check_modules
from harness.client import connect, task_queue
from harness.sandbox import workflow_runner
from workflows import ALL_WORKFLOWS

# Heartbeats reach the server at least this often, so a cancellation lands within about a second.
HEARTBEAT_THROTTLE = timedelta(milliseconds=500)


def build_worker(
    client: Client,
    queue: str | None = None,
    activities: Sequence[Any] | None = None,
    **options: Any,
) -> Worker:
    """A worker serving every harness workflow and the model-call activities."""
    if activities is None:
        gateway = ModelCallActivities()
        stats = RoutingStatsActivities(client)
        load_check_modules()  # HARNESS_CHECKS: modules whose checks must be registered first
        checks = CheckActivities()
        board = TeamBoardActivities(client)  # team members reach their coordinator's board through it
        activities = [
            gateway.model_call,
            gateway.resolve_models,
            stats.routing_stats,
            checks.run_check,
            board.team_board,
        ]
    return Worker(
        client,
        task_queue=queue or task_queue(),
        workflows=ALL_WORKFLOWS,
        activities=list(activities),
        workflow_runner=workflow_runner(),
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        default_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
        **options,
    )


async def run_worker(address: str | None = None, namespace: str | None = None) -> None:
    """Connect and run a worker until cancelled."""
    client = await connect(address, namespace)
    load_check_modules()
    gateway = ModelCallActivities()
    activities = [
        gateway.model_call,
        gateway.resolve_models,
        RoutingStatsActivities(client).routing_stats,
        CheckActivities().run_check,
        TeamBoardActivities(client).team_board,
    ]
    try:
        async with build_worker(client, activities=activities):
            await asyncio.Event().wait()
    finally:
        await gateway.aclose()  # the SDKs' HTTP connections


def main() -> None:
    """Entry point for ``python worker.py``."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_worker())


if __name__ == "__main__":
    main()
