"""Names that running histories and clients refer to, defined once: never rename after release.

Activity types, workflow types and ids, and the default task queue. The search-attribute keys are in
``contracts.search_attributes``.
"""

from __future__ import annotations

TASK_QUEUE = "harness"
"""The task queue jobs and workers meet on, unless ``HARNESS_TASK_QUEUE`` says otherwise."""
TASK_QUEUE_ENV = "HARNESS_TASK_QUEUE"

# ----- activity types ------------------------------------------------------------------------------
MODEL_CALL_ACTIVITY = "harness.model_call"
RESOLVE_MODELS_ACTIVITY = "harness.resolve_models"
ROUTING_STATS_ACTIVITY = "harness.routing_stats"
RUN_CHECK_ACTIVITY = "harness.run_check"
TEAM_BOARD_ACTIVITY = "harness.team_board"
BUDGET_ACCOUNT_ACTIVITY = "harness.budget_account"
ACCOUNT_REAP_ACTIVITY = "harness.budget_account_reap"
TOOL_CALL_ACTIVITY = "harness.tool_call"
LIST_TOOLS_ACTIVITY = "harness.list_tools"
TOOLS_ENV = "HARNESS_TOOLS"
"""The worker's tool catalog (a YAML file): Python tool modules and MCP servers."""

# ----- workflow types and ids ----------------------------------------------------------------------
ACCOUNT_WORKFLOW = "BudgetAccount"
ROUTING_STATS_WORKFLOW = "RoutingStats"
ROUTING_STATS_WORKFLOW_ID = "harness-routing-stats"


ACCOUNT_WEIGHT_MEMO = "weight"
"""Memo key of an account workflow's fairness weight: read by clients starting jobs, with no worker."""


def account_workflow_id(name: str) -> str:
    """The workflow id of budget account ``name``."""
    return f"account-{name}"
