"""Wire types of cost-aware routing: attempts, per-step records, learned outcomes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from policies.routing import RoutingStats


class RoutingAttempt(BaseModel):
    """One rung of a routed step: the model called, its check, and what each cost."""

    model: str
    call_id: str
    passed: bool | None = Field(default=None, description="None: the output was not checked.")
    check: str = Field(default="", description="The checks' verdict in one line.")
    cost_usd: Decimal | None = None
    check_cost_usd: Decimal = Decimal(0)


class RoutingRecord(BaseModel):
    """How one routed step chose its models: the router's final decision and every attempt."""

    step: str
    kind: str
    summary: str = Field(description="RoutingDecision.summary() after the last attempt.")
    decision: dict[str, Any] = Field(description="policies.routing.RoutingDecision as JSON.")
    attempts: list[RoutingAttempt] = Field(default_factory=list)
    outcome: Literal["passed", "failed", "unchecked", "refused"]


class RoutingOutcome(BaseModel):
    """One checked output: did ``model``'s output on a ``kind`` task pass its check."""

    kind: str
    model: str
    passed: bool


class RoutingOutcomes(BaseModel):
    """Input of the routing-stats ``record`` update and activity; no outcomes is a plain read.

    ``key`` makes a batch idempotent: a retried batch with a key already counted is ignored.
    """

    key: str = ""
    outcomes: list[RoutingOutcome] = Field(default_factory=list)


class RoutingStatsState(BaseModel):
    """What the routing-stats workflow carries through continue-as-new and answers to ``stats``."""

    stats: RoutingStats = Field(default_factory=RoutingStats)
    batches: int = Field(default=0, description="Batches with outcomes recorded, in this and earlier runs.")
    keys: list[str] = Field(default_factory=list, description="Recent batch keys, oldest first.")
