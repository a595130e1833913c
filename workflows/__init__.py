"""One workflow per orchestration mode; all share the turn loop and controls in ``_job``."""

from workflows.dag import DagJob
from workflows.groupchat import GroupChatJob
from workflows.routing_stats import RoutingStatsWorkflow
from workflows.sequential import SequentialJob

ALL_WORKFLOWS: list[type] = [SequentialJob, GroupChatJob, DagJob, RoutingStatsWorkflow]

# Workflow type name per spec mode; the client starts jobs by these names.
WORKFLOW_FOR_MODE: dict[str, str] = {
    "sequential": "SequentialJob",
    "groupchat": "GroupChatJob",
    "dag": "DagJob",
}

__all__ = [
    "ALL_WORKFLOWS",
    "WORKFLOW_FOR_MODE",
    "DagJob",
    "GroupChatJob",
    "RoutingStatsWorkflow",
    "SequentialJob",
]
