"""One workflow per orchestration mode; all share the turn loop and controls in ``_job``."""

from workflows.account import BudgetAccountWorkflow
from workflows.dag import DagJob
from workflows.delegation import DelegationJob, SubtaskJob
from workflows.groupchat import GroupChatJob
from workflows.routing_stats import RoutingStatsWorkflow
from workflows.sequential import SequentialJob
from workflows.team import TeamJob, TeamMemberJob

ALL_WORKFLOWS: list[type] = [
    SequentialJob,
    GroupChatJob,
    DagJob,
    DelegationJob,
    SubtaskJob,
    TeamJob,
    TeamMemberJob,
    RoutingStatsWorkflow,
    BudgetAccountWorkflow,
]

# Workflow type name per spec mode; the client starts jobs by these names.
WORKFLOW_FOR_MODE: dict[str, str] = {
    "sequential": "SequentialJob",
    "groupchat": "GroupChatJob",
    "dag": "DagJob",
    "delegation": "DelegationJob",
    "team": "TeamJob",
}

__all__ = [
    "ALL_WORKFLOWS",
    "WORKFLOW_FOR_MODE",
    "BudgetAccountWorkflow",
    "DagJob",
    "DelegationJob",
    "GroupChatJob",
    "RoutingStatsWorkflow",
    "SequentialJob",
    "SubtaskJob",
    "TeamJob",
    "TeamMemberJob",
]
