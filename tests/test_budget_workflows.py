"""Budgets in running jobs: the hierarchical ledger under each exhaustion policy, and quotas per period.

Sequential jobs on the time-skipping server, the model simulator behind the real activities.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from harness.contracts import JobProgress, JobResult, JobStatus, LedgerTotals, StopReason, TurnRecord
from harness.controls import AddBudgetRequest
from harness.sim import SimServer
from harness.spec import JobSpec, parse_spec
from tests.conftest import make_worker, sim_call

pytestmark = pytest.mark.timeout(60)


def chain(budget: dict[str, Any], agents: list[dict[str, Any]] | None = None, steps: int = 3) -> JobSpec:
    """A chain of ``steps`` writer turns on the simulator under ``budget``."""
    return parse_spec(
        {
            "id": f"budget-{uuid.uuid4().hex[:8]}",
            "mode": "sequential",
            "task": "Write a note about durable agent scheduling.",
            "agents": agents or [{"name": "writer", "model": "sim:writer", "max_output_tokens": 200}],
            "steps": [
                {"id": f"s{i}", "agent": "writer", "prompt": "{task}" if i == 0 else "Improve:\n{input}"}
                for i in range(steps)
            ],
            "budget": budget,
        }
    )


async def start(client: Client, queue: str, spec: JobSpec) -> WorkflowHandle[Any, JobResult]:
    return await client.start_workflow(
        "SequentialJob", spec, id=spec.id or "", task_queue=queue, result_type=JobResult
    )


async def progress(handle: WorkflowHandle[Any, Any]) -> JobProgress:
    result: JobProgress = await handle.query("status", result_type=JobProgress)
    return result


async def until_waiting(handle: WorkflowHandle[Any, Any], within: float = 30.0) -> JobProgress:
    """Poll the status query (which does not skip time) until the job says it is waiting."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        current = await progress(handle)
        if current.status is JobStatus.waiting:
            return current
        await asyncio.sleep(0.05)
    pytest.fail("the job never waited")


def assert_within_limits(ledger: LedgerTotals) -> None:
    """Settled plus reserved is within every limit of every node."""
    assert ledger.nodes
    for node in ledger.nodes:
        assert not node.overrun, node.id
        used = node.spent + node.reserved
        for dim in ("tokens", "usd", "calls"):
            cap = node.limits.get(dim)  # type: ignore[arg-type]
            if cap is not None:
                assert used.get(dim) <= cap, (node.id, dim)  # type: ignore[arg-type]


async def test_stop_policy_ends_the_job_within_limits_and_matches_the_simulator(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """Under ``stop`` the job ends budget_exhausted naming the node, no node exceeds a limit, and the
    ledger equals the simulator's tally."""
    sim_call(sim, "/_sim/reset", {})
    spec = chain({"tokens": 450, "on_exhausted": "stop"})
    async with make_worker(ts_env.client, gateway) as worker:
        result = await (await start(ts_env.client, worker.task_queue, spec)).result()
    assert result.stop_reason is StopReason.budget_exhausted
    assert "node 'job'" in result.explanation and "tokens" in result.explanation
    assert 0 < len(result.outputs) < 3
    assert_within_limits(result.ledger)
    job = next(node for node in result.ledger.nodes if node.id == "job")
    assert job.reserved.tokens == 0 and job.spent.tokens == result.ledger.usage.total_tokens
    tally = sim_call(sim, "/_sim/tally")["total"]
    assert result.ledger.calls == tally["completed"]
    assert result.ledger.usage.input_tokens == tally["input_tokens"]
    assert result.ledger.usage.output_tokens == tally["output_tokens"]


async def test_agent_budget_is_a_node_inside_the_job(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """An agent's own budget stops it even though the job has money left, and the refusal names it."""
    agents = [{"name": "writer", "model": "sim:writer", "max_output_tokens": 200, "budget": {"calls": 1}}]
    spec = chain({"tokens": 50_000}, agents=agents)
    async with make_worker(ts_env.client, gateway) as worker:
        result = await (await start(ts_env.client, worker.task_queue, spec)).result()
    assert result.stop_reason is StopReason.budget_exhausted
    assert "agent:writer" in result.explanation and "calls" in result.explanation
    assert result.turns == 1
    assert_within_limits(result.ledger)


async def test_degrade_moves_to_a_cheaper_tier(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """Under ``degrade`` a call whose worst case does not fit on tier-large runs on tier-small instead."""
    agents = [
        {"name": "writer", "model": "sim:tier-large", "max_output_tokens": 400},
        {"name": "spare", "model": "sim:tier-small"},  # declared so the cheaper tier is resolved
    ]
    spec = chain({"usd": "0.004", "on_exhausted": "degrade"}, agents=agents, steps=2)
    async with make_worker(ts_env.client, gateway) as worker:
        handle = await start(ts_env.client, worker.task_queue, spec)
        result = await handle.result()
        turns = await handle.query("transcript", result_type=list[TurnRecord])
    assert "sim:tier-small" in [turn.model for turn in turns]
    assert result.ledger.degraded and "sim:tier-large -> sim:tier-small" in result.ledger.degraded[0]
    assert result.ledger.cost_usd <= Decimal("0.004")
    assert_within_limits(result.ledger)


async def test_ask_waits_until_add_budget_raises_the_limit(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """Under ``ask`` the job waits for add_budget, says so in its status, and completes once raised."""
    spec = chain({"tokens": 450, "on_exhausted": "ask"})
    async with make_worker(ts_env.client, gateway) as worker:
        handle = await start(ts_env.client, worker.task_queue, spec)
        waiting = await until_waiting(handle)
        assert "waiting for add_budget" in waiting.detail
        totals = await handle.execute_update(
            "add_budget", AddBudgetRequest(node="job", tokens=5000), result_type=LedgerTotals
        )
        assert totals.limit_tokens == 5450
        result = await handle.result()
    assert result.stop_reason is StopReason.completed
    assert len(result.outputs) == 3
    assert_within_limits(result.ledger)


async def test_ask_takes_its_default_when_nobody_answers(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """Under ``ask`` with nobody answering, the timeout (time-skipped) takes ``ask_default`` stop."""
    spec = chain({"tokens": 450, "on_exhausted": "ask", "ask_timeout": "2h"})
    async with make_worker(ts_env.client, gateway) as worker:
        handle = await start(ts_env.client, worker.task_queue, spec)
        result = await handle.result()
        described = await handle.describe()
    assert result.stop_reason is StopReason.budget_exhausted
    assert "nobody raised" not in result.explanation or "tokens" in result.explanation
    assert 0 < len(result.outputs) < 3
    assert_within_limits(result.ledger)
    assert described.close_time is not None
    assert (described.close_time - described.start_time).total_seconds() >= 2 * 3600


async def test_quota_waits_for_the_next_period_and_completes(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A per-hour token quota that fits one call makes the job wait (status waiting) and then finish."""
    spec = chain({"tokens": 50_000, "quota": {"tokens": 350, "period": "1h"}})
    async with make_worker(ts_env.client, gateway) as worker:
        handle = await start(ts_env.client, worker.task_queue, spec)
        waiting = await until_waiting(handle)
        assert "quota used up; next period in" in waiting.detail
        result = await handle.result()
        turns = await handle.query("transcript", result_type=list[TurnRecord])
    assert result.stop_reason is StopReason.completed
    assert len(turns) == 3
    gaps = [b.started_at - a.started_at for a, b in itertools.pairwise(turns)]
    assert max(gaps).total_seconds() > 1800
    assert_within_limits(result.ledger)


@pytest.mark.parametrize("name", ["budget-stop", "budget-degrade", "budget-ask"])
async def test_budget_examples_run_out_of_money_under_their_policy(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, name: str
) -> None:
    """Each shipped budget example runs out of money and ends (or degrades) as its policy says."""
    from pathlib import Path

    from harness.spec import load_spec

    path = Path(__file__).parent.parent / "examples" / f"{name}.yaml"
    spec = load_spec(path).model_copy(update={"id": f"{name}-{uuid.uuid4().hex[:8]}"})
    async with make_worker(ts_env.client, gateway) as worker:
        result = await (await start(ts_env.client, worker.task_queue, spec)).result()
    assert_within_limits(result.ledger)
    if name == "budget-degrade":
        assert result.ledger.degraded
    else:
        assert result.stop_reason is StopReason.budget_exhausted
