"""What the modes with child workflows share: carving a child's budget, folding its spend back.

Until the budget keeper offers hierarchical nodes, a child's budget is a plain ``budget`` in its own
spec, a share of what the parent has left, and a child's spend reaches the parent's ledger when the
child reports it (its result's ledger, or a posted turn record). The parent's limits do not count a
running child's spend until then, which the carve makes safe: the shares handed out never add up
to more than the parent had left when they were carved.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from harness.contracts import LedgerTotals, ModelCallResult, Usage
    from harness.spec import AgentSpec, BudgetSpec, JobSpec

if TYPE_CHECKING:
    from workflows._job import JobWorkflow

_LEAST_USD = Decimal("0.000001")


def carve_budget(job: JobWorkflow, share: float) -> BudgetSpec | None:
    """``share`` of what ``job`` has left of each limit, as a child's budget (None: no limits)."""
    totals = job.totals
    tokens = usd = None
    if totals.limit_tokens is not None:
        tokens = max(1, int((totals.limit_tokens - totals.usage.total_tokens) * share))
    if totals.limit_usd is not None:
        left = (totals.limit_usd - totals.cost_usd) * Decimal(str(share))
        usd = max(_LEAST_USD, left.quantize(_LEAST_USD))
    if tokens is None and usd is None:
        return None
    return BudgetSpec(tokens=tokens, usd=usd)


def remaining_deadline(job: JobWorkflow) -> timedelta | None:
    """What is left of the parent's deadline, for a child to inherit (None: no deadline)."""
    spec = job.spec
    if spec is None or spec.deadline is None:
        return None
    left = workflow.info().start_time + spec.deadline - workflow.now()
    return max(left, timedelta(seconds=1))


def child_spec(
    job: JobWorkflow,
    *,
    child_id: str,
    agent: AgentSpec,
    mode: str,
    task: str,
    share: float,
    steps: list[dict[str, str]] | None = None,
) -> JobSpec:
    """A one-agent spec for a child job, with a carved budget and the parent's remaining deadline.

    The spec carries no id (``child_id`` holds a '/', which job ids may not): the child's workflow
    id, given at its start, is its job id.
    """
    spec = job.spec
    assert spec is not None
    budget = carve_budget(job, share)
    return JobSpec.model_validate(
        {
            "name": f"{spec.name or spec.mode}: {child_id.rsplit('/', 1)[-1]}",
            "mode": mode,
            "task": task,
            "agents": [agent.model_dump()],
            "steps": steps or [],
            "budget": budget.model_dump() if budget is not None else None,
            "deadline": remaining_deadline(job),
            "priority": spec.priority,
        }
    )


def absorb(job: JobWorkflow, call_id: str, agent: str, usage: Usage, cost: Decimal | None) -> None:
    """Charge a child's reported spend to ``job``'s ledger under ``agent``."""
    if usage.requests == 0 and usage.total_tokens == 0 and not cost:
        return
    assert job.budget is not None and job.spec is not None
    model = job.models[job.spec.agent(agent).model]
    result = ModelCallResult(
        call_id=call_id, text="", usage=usage, cost_usd=cost, model=model.model, provider=model.provider
    )
    job.budget.settle(call_id, agent, model, result)


def absorb_ledger(job: JobWorkflow, child_id: str, ledger: LedgerTotals) -> None:
    """Charge everything a finished child spent to ``job``'s ledger, per agent."""
    for agent, usage in ledger.per_agent.items():
        cost = ledger.per_agent_cost_usd.get(agent) if ledger.cost_known else None
        absorb(job, child_id, agent, usage, cost)


def usage_minus(a: Usage, b: Usage) -> Usage:
    """``a - b`` field by field, never below zero (what a child spent beyond what it reported)."""
    return Usage(
        input_tokens=max(0, a.input_tokens - b.input_tokens),
        output_tokens=max(0, a.output_tokens - b.output_tokens),
        cache_read_tokens=max(0, a.cache_read_tokens - b.cache_read_tokens),
        cache_write_tokens=max(0, a.cache_write_tokens - b.cache_write_tokens),
        reasoning_tokens=max(0, a.reasoning_tokens - b.reasoning_tokens),
        requests=max(0, a.requests - b.requests),
        estimated=a.estimated,
    )
