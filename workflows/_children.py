"""What the modes with child workflows share: carving a child's budget, folding its spend back.

A child's budget is a plain ``budget`` in its own spec (the child enforces it like any job), a
share of what the parent has left. ``open_child`` also sets that amount aside on the parent's
ledger (``BudgetKeeper.carve_child``: it counts as used until the child returns), and
``close_child`` charges the child's reported spend on the child's node and returns the rest.
Without a carve (``absorb_ledger`` alone) the spend reaches the parent when the child reports it;
the shares handed out never add up to more than the parent had left when they were carved.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.display import timer_at
    from contracts.jobs import JobResult, LedgerTotals
    from contracts.models import ModelCallResult, Usage
    from contracts.spec import AgentSpec, BudgetSpec, JobSpec
    from contracts.state import JobInput, JobState

from workflows._budget import child_node
from workflows._job import JobWorkflow
from workflows._job_errors import StopJob
from workflows._tools import tool_refs

_LEAST_USD = Decimal("0.000001")
END_GRACE = timedelta(seconds=30)  # how long stopping children get to report their spend


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
    """What is left of the parent's deadline, for a child to inherit (None: no deadline).

    Counted from the job's first start (``JobWorkflow.deadline_left``), right after continue-as-new too.
    """
    try:
        left = job.deadline_left()
    except StopJob:
        left = timedelta(0)
    return None if left is None else max(left, timedelta(seconds=1))


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
            "priority": job.job_priority,  # a `set_priority job N` reaches children started after it
            "turns_per_run": spec.turns_per_run,
        }
    )


def child_input(job: JobWorkflow, spec: JobSpec) -> JobInput:
    """A child's input: its spec, and the models and tools the parent resolved, so the child resolves
    none (an activity less per child, and the whole job prices a model and sees a tool the same way)."""
    models = {ref: job.state.models[ref] for ref in spec.model_refs() if ref in job.state.models}
    tools = {ref: job.state.tools[ref] for ref in tool_refs(spec) if ref in job.state.tools}
    return JobInput(
        spec=spec,
        state=JobState(
            models=models,
            tools=tools,
            payload_limit=job.state.payload_limit,
            role_queues=job.state.role_queues,
        ),
    )


def absorb(
    job: JobWorkflow, call_id: str, agent: str, usage: Usage, cost: Decimal | None, node: str | None = None
) -> None:
    """Charge a child's reported spend to ``job``'s ledger under ``agent`` (on ``node`` if given)."""
    if usage.requests == 0 and usage.total_tokens == 0 and not cost:
        return
    model = job.state.models[job.spec.agent(agent).model]
    result = ModelCallResult(
        call_id=call_id, text="", usage=usage, cost_usd=cost, model=model.model, provider=model.provider
    )
    job.budget.settle(call_id, agent, model, result, node=node)


def absorb_ledger(job: JobWorkflow, child_id: str, ledger: LedgerTotals, node: str | None = None) -> None:
    """Charge everything a finished child spent to ``job``'s ledger, per agent."""
    for agent, usage in ledger.per_agent.items():
        cost = ledger.per_agent_cost_usd.get(agent) if ledger.cost_known else None
        absorb(job, child_id, agent, usage, cost, node=node)
    job.budget.count_child_tools(ledger, node=node)


def open_child(job: JobWorkflow, child_id: str, budget: BudgetSpec | None) -> str | None:
    """Set ``budget`` aside on the parent's ledger for ``child_id``: None if done, else why not."""
    if budget is None:
        return None
    return job.budget.carve_child(child_id, budget.tokens, budget.usd)


def close_child(job: JobWorkflow, child_id: str, ledger: LedgerTotals) -> None:
    """Charge a returned child's spend on its node and give the rest of its carve back."""
    node = child_node(child_id)
    carved = node in job.budget.ledger.nodes  # no node: nothing was set aside, charge the agents'
    absorb_ledger(job, child_id, ledger, node=node if carved else None)
    if carved:
        job.budget.close_child(child_id, ledger.usage.total_tokens, ledger.cost_usd)


async def end_children(
    job: JobWorkflow,
    children: Mapping[str, workflow.ChildWorkflowHandle[Any, JobResult]],
    signal: str,
    payload: Any = None,
    grace: timedelta = END_GRACE,
) -> dict[str, LedgerTotals]:
    """Stop running children and collect what each spent: the one child-stopping algorithm.

    Signals every child still running (``abort`` with its reason, or the team's ``close``), waits up
    to ``grace`` for them to end (closing the parent cancels what is left, by ``REQUEST_CANCEL``),
    and returns each child's ledger: its result's for a child that ended with one, an empty ledger
    for one that failed or was cancelled. The caller folds the spend back by its own budget rule.
    """
    for handle in children.values():
        if handle.done():
            continue
        try:
            await (handle.signal(signal, payload) if payload is not None else handle.signal(signal))
        except Exception:  # a child that ended meanwhile needs no signal
            continue
    with contextlib.suppress(TimeoutError):
        await workflow.wait_condition(
            lambda: all(h.done() for h in children.values()),
            timeout=grace,
            timeout_summary=f"children report their spend by {timer_at(workflow.now() + grace)}",
        )
    ledgers: dict[str, LedgerTotals] = {}
    for child_id, handle in children.items():
        ended = handle.done() and not handle.cancelled() and handle.exception() is None
        ledgers[child_id] = handle.result().ledger if ended else LedgerTotals()
    return ledgers
