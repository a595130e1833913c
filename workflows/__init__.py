"""One workflow per orchestration mode; all share the turn loop and controls in ``_job``.

The modes are imported when first asked for, not with the package: Temporal's sandbox imports a
workflow's module afresh for every run it starts, so a child ``SubtaskJob`` run loads the delegation
module and the kernel, not every mode's code with them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workflows._job import JobWorkflow
    from workflows.account import BudgetAccountWorkflow
    from workflows.dag import DagJob
    from workflows.delegation import DelegationJob, SubtaskJob
    from workflows.fairness import TokenFairnessWorkflow
    from workflows.groupchat import GroupChatJob
    from workflows.routing_stats import RoutingStatsWorkflow
    from workflows.sequential import SequentialJob
    from workflows.team import TeamJob, TeamMemberJob

    JOB_WORKFLOWS: list[type[JobWorkflow]]
    """The job workflows a client starts for a spec's mode (children and long-lived ones are not)."""
    ALL_WORKFLOWS: list[type]
    """Every workflow a worker registers."""
    WORKFLOW_FOR_MODE: dict[str, str]
    """Workflow type name per spec mode, derived from the classes (``mode`` and ``@workflow.defn``)."""

_MODULE_OF = {
    "JobWorkflow": "workflows._job",
    "BudgetAccountWorkflow": "workflows.account",
    "DagJob": "workflows.dag",
    "DelegationJob": "workflows.delegation",
    "SubtaskJob": "workflows.delegation",
    "GroupChatJob": "workflows.groupchat",
    "RoutingStatsWorkflow": "workflows.routing_stats",
    "SequentialJob": "workflows.sequential",
    "TeamJob": "workflows.team",
    "TeamMemberJob": "workflows.team",
    "TokenFairnessWorkflow": "workflows.fairness",
}
_JOB_WORKFLOWS = ["SequentialJob", "GroupChatJob", "DagJob", "DelegationJob", "TeamJob"]
_OTHER_WORKFLOWS = [
    "SubtaskJob",
    "TeamMemberJob",
    "RoutingStatsWorkflow",
    "BudgetAccountWorkflow",
    "TokenFairnessWorkflow",
]


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    elif name == "JOB_WORKFLOWS":
        value = [__getattr__(n) for n in _JOB_WORKFLOWS]
    elif name == "ALL_WORKFLOWS":
        value = [__getattr__(n) for n in [*_JOB_WORKFLOWS, *_OTHER_WORKFLOWS]]
    elif name == "WORKFLOW_FOR_MODE":
        from temporalio import workflow

        value = {
            cls.mode: workflow._Definition.must_from_class(cls).name or cls.__name__
            for cls in __getattr__("JOB_WORKFLOWS")
        }
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [
    "ALL_WORKFLOWS",
    "JOB_WORKFLOWS",
    "WORKFLOW_FOR_MODE",
    "BudgetAccountWorkflow",
    "DagJob",
    "DelegationJob",
    "GroupChatJob",
    "JobWorkflow",
    "RoutingStatsWorkflow",
    "SequentialJob",
    "SubtaskJob",
    "TeamJob",
    "TeamMemberJob",
    "TokenFairnessWorkflow",
]
