"""Names that running histories and clients refer to, defined once: never rename after release.

Activity types, workflow types and ids, and the default task queue. The search-attribute keys are in
``contracts.search_attributes``.
"""

from __future__ import annotations

import re
import unicodedata

TASK_QUEUE = "harness"
"""The task queue jobs and workers meet on, unless ``HARNESS_TASK_QUEUE`` says otherwise."""
TASK_QUEUE_ENV = "HARNESS_TASK_QUEUE"

ROLES = ("jobs", "models", "tools")
"""What a worker can serve (``harness worker --queues``), each on task queues of its own, derived
from the jobs queue ``Q``: ``jobs`` on ``Q`` (workflows and the small activities: model resolution,
checks, routing stats, team boards, budget accounts), ``models`` on ``Q-models`` and on
``Q-models-<provider>`` for each provider the catalog gives a rate limit, ``tools`` on ``Q-tools``
and on ``Q-tools-<server>`` for each MCP server the tool catalog gives a rate limit.
Separate queues let each be scaled and rate-limited on its own (a task queue dispatches any of its
tasks to any poller: roles cannot share one). The shared ``Q-models`` and ``Q-tools`` are used only
with ``HARNESS_ROLE_QUEUES=1`` (a call on another queue than its job's costs a dispatch through
matching, about 50 ms on a dev server); rate-limited providers' and servers' queues always."""


ROLE_QUEUES_ENV = "HARNESS_ROLE_QUEUES"
"""``1`` on every worker of a deployment: model and tool calls go to ``Q-models`` and ``Q-tools``, so
workers can serve a subset of the roles (``harness worker --queues``). Unset: they stay on ``Q``."""


def models_queue(queue: str, provider: str | None = None) -> str:
    """The task queue of model calls of jobs on ``queue``: ``queue-models``, or for a provider with
    a rate limit of its own (``ModelInfo.own_queue``) ``queue-models-<provider>``."""
    return f"{queue}-models" if provider is None else f"{queue}-models-{provider}"


def tools_queue(queue: str, server: str | None = None) -> str:
    """The task queue of tool calls (and tool listings) of jobs on ``queue``: ``queue-tools``, or for
    an MCP server with a rate limit of its own (``ToolDef.own_queue``) ``queue-tools-<server>``."""
    return f"{queue}-tools" if server is None else f"{queue}-tools-{server}"


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
SET_FAIRNESS_WEIGHTS_ACTIVITY = "harness.set_fairness_weights"
SET_QUEUE_RATE_ACTIVITY = "harness.set_queue_rate"
TOOLS_ENV = "HARNESS_TOOLS"
"""The worker's tool catalog (a YAML file): Python tool modules and MCP servers."""

# ----- workflow types and ids ----------------------------------------------------------------------
JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
"""What a job id (its workflow id) may be, whole: checked when a spec is loaded and again when the
workflow decodes its input, so an id the workflow would refuse never starts."""
JOB_ID_RULE = "1-200 characters of letters, digits, '.', '_' and '-', starting with a letter or digit"

_NOT_ID = re.compile(r"[^a-z0-9._-]+")
_SEPARATORS = re.compile(r"[._-]*-[._-]*|[._]{2,}")


def job_id_stem(name: str, limit: int = 40) -> str:
    """``name`` as the readable start of a job id (``JOB_ID``), at most ``limit`` characters, maybe
    empty: lower case, accents dropped ('Résumé' is 'resume'), any other character outside the id's
    a separator, each run of separators one '-', none at either end."""
    letters = unicodedata.normalize("NFKD", name.lower())
    plain = "".join(char for char in letters if not unicodedata.combining(char))
    stem = _SEPARATORS.sub("-", _NOT_ID.sub("-", plain)).strip("._-")
    return stem[:limit].rstrip("._-")


ACCOUNT_WORKFLOW = "BudgetAccount"
ROUTING_STATS_WORKFLOW = "RoutingStats"
ROUTING_STATS_WORKFLOW_ID = "harness-routing-stats"
TOKEN_FAIRNESS_WORKFLOW = "TokenFairness"
TOKEN_FAIRNESS_ENV = "HARNESS_TOKEN_FAIRNESS"
"""``1`` on the workers: tenants share model queues by tokens, not by calls (``policies.fairness``)."""


def fairness_workflow_id(queue: str) -> str:
    """The id of the ``TokenFairness`` workflow of jobs queue ``queue``."""
    return f"harness-fairness-{queue}"


def jobs_queue_of(queue: str) -> str:
    """The jobs queue a model queue (``models_queue``) belongs to."""
    return queue.rsplit("-models", 1)[0]


ACCOUNT_WEIGHT_MEMO = "weight"
"""Memo key of an account workflow's fairness weight: read by clients starting jobs, with no worker."""


def account_workflow_id(name: str) -> str:
    """The workflow id of budget account ``name``."""
    return f"account-{name}"
