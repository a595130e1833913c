"""Payloads of the controls every job accepts (signals and updates), as documented JSON.

These are plain JSON objects so the stock CLI works too, e.g.
``temporal workflow signal --workflow-id JOB --name interrupt --input '{"message": "stop, use French"}'``.
Amounts are checked by the update validators (not by the schema), so a bad value is rejected with a
clear message and nothing is written to history.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field


class InterruptRequest(BaseModel):
    """Signal ``interrupt``: cancel the in-flight call now; the message enters the conversation."""

    message: str = ""
    agent: str | None = Field(default=None, description="Who the message is for; None means all.")
    priority: int = Field(
        default=1,
        description="0 is most urgent. More urgent than the job's priority (spec 'priority', default 3) "
        "cancels the in-flight call; otherwise the message queues for the next turn boundary.",
    )


class InjectRequest(BaseModel):
    """Signal ``inject``: add a message before the next turn, without preempting."""

    message: str
    agent: str | None = None


class AbortRequest(BaseModel):
    """Signal ``abort``: end with the best result so far and stop reason ``aborted``."""

    reason: str = ""


class AddBudgetRequest(BaseModel):
    """Update ``add_budget``: raise a budget node's limits (``job`` is the whole job)."""

    node: str = "job"
    tokens: int = 0
    usd: Decimal = Decimal(0)
    tool_calls: int = 0


class GateDecision(BaseModel):
    """Updates ``approve`` / ``reject``: decide a pending approval gate."""

    gate: str
    note: str = ""
    by: str = Field(default="", description="Who decides; recorded in the result and the UI.")


class SetPriorityRequest(BaseModel):
    """Update ``set_priority``: change a task's priority (0 is most urgent); task ``job`` is the
    running work itself, which sets the bar an interrupt must beat to preempt."""

    task: str
    priority: int
