"""Budget keeping for a job: reserve a call's worst case before it starts, settle it after.

``JobWorkflow.turn`` calls ``reserve`` before every model call and ``settle`` (or ``fail``) after.
``reserve`` may end the job (``StopJob`` with ``budget_exhausted``), wait (a quota period, a person
raising the budget), or grant the call on a cheaper model or with fewer output tokens (degrade).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from harness.contracts import LedgerTotals, ModelCallResult, ModelInfo, StopReason, Usage
    from harness.controls import AddBudgetRequest
    from harness.spec import AgentSpec, JobSpec

from workflows._job_errors import StopJob

if TYPE_CHECKING:
    from workflows._job import JobWorkflow


@dataclass
class Grant:
    """What a reservation allows: the model and output cap the call must use."""

    model: ModelInfo
    max_output_tokens: int


class BudgetKeeper:
    """The job's spend and limits. State that must survive lives in ``totals`` (a pydantic model)."""

    def __init__(self, job: JobWorkflow, spec: JobSpec) -> None:
        self.job = job
        self.spec = spec
        self.totals = LedgerTotals()
        if spec.budget is not None:
            self.totals.limit_tokens = spec.budget.tokens
            self.totals.limit_usd = spec.budget.usd

    async def reserve(
        self, call_id: str, agent: AgentSpec, model: ModelInfo, input_estimate: int, max_output_tokens: int
    ) -> Grant:
        """Check the call's worst case against the limits; raise ``StopJob`` when it cannot fit."""
        worst = Usage(input_tokens=input_estimate, output_tokens=max_output_tokens, requests=1)
        limit_tokens, limit_usd = self.totals.limit_tokens, self.totals.limit_usd
        spent = self.totals.usage.total_tokens
        if limit_tokens is not None and spent + worst.total_tokens > limit_tokens:
            raise StopJob(
                StopReason.budget_exhausted,
                f"the next call of {agent.name} may need {worst.total_tokens} tokens; "
                f"{limit_tokens - spent} of {limit_tokens} are left",
            )
        worst_cost = model.price.cost(worst)
        if limit_usd is not None and self.totals.cost_usd + worst_cost > limit_usd:
            raise StopJob(
                StopReason.budget_exhausted,
                f"the next call of {agent.name} may cost ${worst_cost:.6f}; "
                f"${limit_usd - self.totals.cost_usd:.6f} of ${limit_usd} is left",
            )
        return Grant(model=model, max_output_tokens=max_output_tokens)

    def settle(self, call_id: str, agent: str, model: ModelInfo, result: ModelCallResult) -> None:
        """Charge the call's real usage, and the estimated usage of attempts that died mid-call."""
        charges = [(result.usage, result.cost_usd)]
        if result.lost_usage is not None:
            charges.append((result.lost_usage, model.price.cost(result.lost_usage)))
        for usage, cost in charges:
            totals = self.totals
            totals.usage = totals.usage + usage
            totals.calls += usage.requests
            totals.per_agent[agent] = totals.per_agent.get(agent, Usage()) + usage
            if cost is None:
                totals.cost_known = False
            else:
                totals.cost_usd += cost
                totals.per_agent_cost_usd[agent] = totals.per_agent_cost_usd.get(agent, Decimal(0)) + cost

    def fail(self, call_id: str) -> None:
        """The call ended without a result (the turn was abandoned): nothing was reserved to release."""

    def add(self, request: AddBudgetRequest) -> LedgerTotals:
        """Raise the job's limits (the ``add_budget`` update)."""
        if request.tokens:
            self.totals.limit_tokens = (self.totals.limit_tokens or 0) + request.tokens
        if request.usd:
            self.totals.limit_usd = (self.totals.limit_usd or Decimal(0)) + request.usd
        return self.totals

    def validate_add(self, request: AddBudgetRequest) -> None:
        """Refuse a bad ``add_budget`` before it is written to history."""
        if request.tokens < 0 or request.usd < 0:
            raise ValueError("amounts must not be negative")
        if not request.tokens and not request.usd:
            raise ValueError("give tokens or usd to add")
        if request.node not in ("job", self.job.job_id):
            raise ValueError(f"unknown budget node {request.node!r}; this job has only 'job'")
