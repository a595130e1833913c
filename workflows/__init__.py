"""One workflow per orchestration mode; all share the turn loop and controls in ``_job``."""

from temporalio import workflow

from workflows._job import JobWorkflow
from workflows.account import BudgetAccountWorkflow
from workflows.dag import DagJob
from workflows.delegation import DelegationJob, SubtaskJob
from workflows.groupchat import GroupChatJob
from workflows.routing_stats import RoutingStatsWorkflow
from workflows.sequential import SequentialJob
from workflows.team import TeamJob, TeamMemberJob

# The job workflows a client starts for a spec's mode (children and long-lived workflows are not).
JOB_WORKFLOWS: list[type[JobWorkflow]] = [SequentialJob, GroupChatJob, DagJob, DelegationJob, TeamJob]
ALL_WORKFLOWS: list[type] = [
    *JOB_WORKFLOWS,
    SubtaskJob,
    TeamMemberJob,
    RoutingStatsWorkflow,
    BudgetAccountWorkflow,
]

# Workflow type name per spec mode, derived from the classes (their ``mode`` and ``@workflow.defn``).
WORKFLOW_FOR_MODE: dict[str, str] = {
    cls.mode: workflow._Definition.must_from_class(cls).name or cls.__name__ for cls in JOB_WORKFLOWS
}

__all__ = [
    "ALL_WORKFLOWS",
    "JOB_WORKFLOWS",
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
