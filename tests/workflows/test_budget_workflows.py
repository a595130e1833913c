"""Budgets in running jobs: the hierarchical ledger under each exhaustion policy, quotas per period,
parallel calls, child carves, and budget accounts shared by jobs.

Jobs run on the time-skipping server with the model simulator behind the real activities; budget
accounts run on the real dev server (the time-skipping server loses track of updates while it
skips time).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.budget_account import account_update
from activities.model_call import ModelCallActivities
from contracts.accounts import AccountView, GiveBackRequest, LeaseReply, LeaseRequest, TopupRequest
from contracts.controls import AbortRequest, AddBudgetRequest
from contracts.jobs import JobProgress, JobStatus, LedgerTotals, StopReason
from contracts.models import ModelCallResult, Usage
from contracts.names import account_workflow_id
from contracts.spec import JobSpec, parse_spec
from contracts.state import JobInput
from contracts.tools import ToolDef
from harness.sim import SimServer
from policies.ledger import DIMS, Amount
from tests.helpers import (
    ROOT,
    account_activities,
    assert_ledger_matches_sim,
    harness,
    make_worker,
    run_job,
    sim_call,
    start_account,
    start_job,
    status_of,
    transcript_of,
    until,
)
from workflows._budget import child_node
from workflows._job import JobWorkflow

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


async def until_waiting(handle: WorkflowHandle[Any, Any], within: float = 30.0) -> JobProgress:
    """Poll the status query (which does not skip time) until the job says it is waiting."""

    async def waiting() -> JobProgress | None:
        current = await status_of(handle)
        return current if current.status is JobStatus.waiting else None

    found: JobProgress = await until(waiting, within=within, failure="the job never waited")
    return found


def assert_within_limits(ledger: LedgerTotals) -> None:
    """Settled plus reserved is within every limit of every node."""
    assert ledger.nodes
    for node in ledger.nodes:
        assert not node.overrun, node.id
        used = node.spent + node.reserved
        for dim in DIMS:
            cap = node.limits.get(dim)
            if cap is not None:
                assert used.get(dim) <= cap, (node.id, dim)


async def test_stop_policy_ends_the_job_within_limits_and_matches_the_simulator(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """Under ``stop`` the job ends budget_exhausted naming the node, no node exceeds a limit, and the
    ledger equals the simulator's tally."""
    sim_call(sim, "/_sim/reset", {})
    spec = chain({"tokens": 450, "on_exhausted": "stop"})
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
    assert result.stop_reason is StopReason.budget_exhausted
    assert "node 'job'" in result.explanation and "tokens" in result.explanation
    assert 0 < len(result.outputs) < 3
    assert_within_limits(result.ledger)
    job = next(node for node in result.ledger.nodes if node.id == "job")
    assert job.reserved.tokens == 0 and job.spent.tokens == result.ledger.usage.total_tokens
    assert_ledger_matches_sim(result, sim)


async def test_agent_budget_is_a_node_inside_the_job(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """An agent's own budget stops it even though the job has money left, and the refusal names it."""
    agents = [{"name": "writer", "model": "sim:writer", "max_output_tokens": 200, "budget": {"calls": 1}}]
    spec = chain({"tokens": 50_000}, agents=agents)
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
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
        handle = await start_job(ts_env.client, worker.task_queue, spec)
        result = await handle.result()
        turns = await transcript_of(handle)
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
        handle = await start_job(ts_env.client, worker.task_queue, spec)
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
        handle = await start_job(ts_env.client, worker.task_queue, spec)
        result = await handle.result()
        described = await handle.describe()
    assert result.stop_reason is StopReason.budget_exhausted
    assert "node 'job'" in result.explanation and "of its 450 tokens limit left" in result.explanation
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
        handle = await start_job(ts_env.client, worker.task_queue, spec)
        waiting = await until_waiting(handle)
        assert "quota used up; next period in" in waiting.detail
        result = await handle.result()
        turns = await transcript_of(handle)
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
    from harness.specfile import load_spec

    path = ROOT / "examples" / f"{name}.yaml"
    spec = load_spec(path).model_copy(update={"id": f"{name}-{uuid.uuid4().hex[:8]}"})
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
    assert_within_limits(result.ledger)
    if name == "budget-degrade":
        assert result.ledger.degraded
    else:
        assert result.stop_reason is StopReason.budget_exhausted


async def test_parallel_calls_racing_for_the_last_dollars_never_overspend(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """Six DAG steps started at once against a budget with room for three worst cases: every node
    stays within its limits, nothing stays reserved, and every call the simulator saw is charged."""
    sim_call(sim, "/_sim/reset", {})
    spec = parse_spec(
        {
            "id": f"race-{uuid.uuid4().hex[:8]}",
            "mode": "dag",
            "task": "Race.",
            "max_concurrency": 6,
            "agents": [{"name": "writer", "model": "sim:writer", "max_output_tokens": 200}],
            "steps": [{"id": f"p{i}", "agent": "writer", "prompt": "Write about {task}"} for i in range(6)],
            "budget": {"usd": "0.00096", "on_exhausted": "stop"},
        }
    )
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
    assert result.stop_reason is StopReason.budget_exhausted
    assert 0 < result.ledger.calls < 6
    assert_within_limits(result.ledger)
    job = next(node for node in result.ledger.nodes if node.id == "job")
    assert job.reserved.usd == 0 and job.spent.usd == result.ledger.cost_usd <= Decimal("0.00096")
    # Calls still running when the job stopped were cancelled: charged at least what was served.
    tally = sim_call(sim, "/_sim/tally")["total"]
    served = tally["output_tokens"] + tally["incomplete_output_tokens"]
    assert result.ledger.calls >= tally["requests"]
    assert result.ledger.usage.output_tokens >= served
    assert result.ledger.usage.estimated or result.ledger.usage.output_tokens == served


@workflow.defn(name="CarveProbe", sandboxed=False)
class CarveProbe(JobWorkflow):
    """Carves three children out of a 1,000-token job and closes them as success, failure and cancel."""

    mode = "probe"

    @workflow.run
    async def run(self, job_input: JobInput) -> LedgerTotals:
        """Carve, charge and close, as the delegation modes do, then report the ledger."""
        await self.start_job()
        budget = self.budget
        refusals = [budget.carve_child(c, 300, None) for c in ("ok", "failed", "cancelled")]
        assert refusals == [None, None, None], refusals
        too_much = budget.carve_child("greedy", 200, None)
        assert too_much is not None and "tokens" in too_much, too_much
        model = self.state.models["sim:writer"]
        # The failed child reported 120 tokens before failing; the cancelled one had a call cut
        # mid-flight, charged as estimated: both on the child's own node, as they report.
        for child, tokens in (("failed", 120), ("cancelled", 80)):
            usage = Usage(input_tokens=tokens // 2, output_tokens=tokens // 2, requests=1, estimated=True)
            result = ModelCallResult(
                call_id=f"{child}/1", text="", usage=usage, cost_usd=None, model="writer", provider="sim"
            )
            budget.settle(f"{child}/1", "w", model, result, node=child_node(child))
        held = next(node for node in budget.totals.nodes if node.id == "job").reserved.tokens
        assert held == 300 + (300 - 120) + (300 - 80), held  # what each open child still holds
        budget.close_child("ok", 250, Decimal("0.0003"))  # success: its whole spend reported at the end
        budget.close_child("failed", 120, Decimal(0))
        budget.close_child("cancelled", 0, Decimal(0))  # cancelled: nothing more than already charged
        budget.close_child("ok", 250, Decimal("0.0003"))  # closing twice changes nothing
        return budget.totals


async def test_child_budgets_return_to_the_parent_on_success_failure_and_cancel(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """What carved children do not spend returns to the job, whether they succeed, fail or are
    cancelled; a carve larger than what is left is refused, naming the limit."""
    spec = chain({"tokens": 1000})
    queue = f"probe-{uuid.uuid4().hex[:8]}"
    async with Worker(
        ts_env.client, task_queue=queue, workflows=[CarveProbe], activities=[gateway.resolve_models]
    ):
        totals = await ts_env.client.execute_workflow(
            "CarveProbe", spec, id=spec.id or "", task_queue=queue, result_type=LedgerTotals
        )
    nodes = {node.id: node for node in totals.nodes}
    assert nodes["job"].spent.tokens == 250 + 120 + 80
    assert nodes["job"].reserved.tokens == 0 and nodes["job"].remaining.tokens == 1000 - 450
    assert all(nodes[child_node(c)].closed for c in ("ok", "failed", "cancelled"))
    assert nodes[child_node("cancelled")].estimated and not nodes["job"].overrun
    assert_within_limits(totals)


class ToolProbeResult(BaseModel):
    """What ToolProbe saw: each reserve_tool answer, how long they took, and the ledger after."""

    reasons: list[str | None]
    waited: timedelta
    in_flight_refused: str
    totals: LedgerTotals


SEARCH = ToolDef(ref="search", name="search")
PAID = ToolDef(ref="paid", name="paid", price_usd=Decimal("0.004"))


@workflow.defn(name="ToolProbe", sandboxed=False)
class ToolProbe(JobWorkflow):
    """Reserves and settles tool calls as the tool loop does, against an agent cap and a job quota."""

    mode = "probe"

    @workflow.run
    async def run(self, job_input: JobInput) -> ToolProbeResult:
        """Reserve, settle and release tool calls of two agents, then report the answers and ledger."""
        await self.start_job()
        budget = self.budget
        writer, helper = self.spec.agent("writer"), self.spec.agent("helper")
        reasons: list[str | None] = []
        start = workflow.now()
        for call_id, ran in (("w1", True), ("w2", False), ("w3", True)):
            reasons.append(await budget.reserve_tool(call_id, writer, SEARCH))
            budget.settle_tool(call_id, "writer", SEARCH, ran=ran)
        budget.settle_tool("w3", "writer", SEARCH, ran=True)  # settling twice changes nothing
        reasons.append(await budget.reserve_tool("w4", writer, SEARCH))  # writer's own cap: 2
        raise_writer = AddBudgetRequest(node="writer", tool_calls=1)
        budget.validate_add(raise_writer)
        budget.add(raise_writer)
        reasons.append(await budget.reserve_tool("w5", writer, SEARCH))  # fits the raised cap
        budget.settle_tool("w5", "writer", SEARCH, ran=False)
        reasons.append(await budget.reserve_tool("h1", helper, PAID))
        try:
            budget.check_settled()
            in_flight = ""
        except RuntimeError as error:
            in_flight = str(error)
        budget.settle_tool("h1", "helper", PAID, ran=True)
        reasons.append(await budget.reserve_tool("h2", helper, PAID))  # the job's quota: 3 per hour
        budget.check_settled()
        return ToolProbeResult(
            reasons=reasons, waited=workflow.now() - start, in_flight_refused=in_flight, totals=budget.totals
        )


async def test_tool_calls_are_reserved_and_settled_on_the_agent_and_job_caps(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A tool call is reserved under the agent's tool_calls cap and the job's quota, is refused at
    once (no wait) naming the node, counts in tool_calls and usd but not in calls, and a released
    one is given back."""
    spec = chain(
        {"usd": "0.01", "tool_calls": 4, "quota": {"tool_calls": 3, "period": "1h"}},
        agents=[
            {"name": "writer", "model": "sim:writer", "budget": {"tool_calls": 2}},
            {"name": "helper", "model": "sim:writer"},
        ],
    )
    queue = f"probe-{uuid.uuid4().hex[:8]}"
    async with Worker(
        ts_env.client, task_queue=queue, workflows=[ToolProbe], activities=[gateway.resolve_models]
    ):
        probe = await ts_env.client.execute_workflow(
            "ToolProbe", spec, id=spec.id or "", task_queue=queue, result_type=ToolProbeResult
        )
    assert probe.reasons[:3] == [None, None, None]
    assert probe.reasons[3] == (
        "tool 'search' of writer: node 'agent:writer': needs 1 tool calls,"
        " only 0 of its 2 tool calls limit left"
    )
    assert probe.reasons[4:6] == [None, None]
    refused = probe.reasons[6]
    assert refused is not None and refused.startswith(
        "tool 'paid' of helper: node 'job': needs 1 tool calls, only 0 of its 3 tool calls per 1:00:00 quota"
    )
    assert probe.waited == timedelta(0)
    assert "h1" in probe.in_flight_refused
    totals = probe.totals
    assert (totals.tool_calls, totals.limit_tool_calls, totals.calls) == (3, 4, 0)
    assert totals.per_agent_tool_calls == {"writer": 2, "helper": 1}
    assert totals.cost_usd == totals.tool_cost_usd == Decimal("0.004")
    assert totals.per_agent_cost_usd == {"helper": Decimal("0.004")}
    nodes = {node.id: node for node in totals.nodes}
    assert nodes["job"].spent == Amount(usd=Decimal("0.004"), tool_calls=3)
    assert nodes["job"].reserved == Amount()
    assert nodes["agent:writer"].spent.tool_calls == 2
    assert nodes["agent:writer"].limits.tool_calls == 3
    assert nodes["job"].quota_used.tool_calls == 3
    assert_within_limits(totals)


async def show(handle: WorkflowHandle[Any, Any]) -> AccountView:
    view: AccountView = await handle.query("show", result_type=AccountView)
    return view


async def test_jobs_lease_from_an_account_give_back_and_topup_makes_room(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A job naming an account leases its budget and gives back the unused part; a lease that does
    not fit is refused (the job stops budget_exhausted without a call) until a top-up."""
    activities = account_activities(dev_env.client, gateway)
    async with make_worker(dev_env.client, gateway, activities=activities) as worker:
        account = await start_account(dev_env.client, worker.task_queue, usd=Decimal("0.01"))
        name = (await show(account)).state.name
        first = chain({"usd": "0.006"}).model_copy(update={"account": name})
        done = await run_job(dev_env.client, worker.task_queue, first)
        assert done.stop_reason is StopReason.completed
        after = await show(account)
        assert not after.state.leases and after.state.spent_usd == done.ledger.cost_usd > 0
        assert after.remaining_usd == Decimal("0.01") - done.ledger.cost_usd

        greedy = chain({"usd": "0.0099"}).model_copy(update={"account": name})
        refused = await run_job(dev_env.client, worker.task_queue, greedy)
        assert refused.stop_reason is StopReason.budget_exhausted and refused.turns == 0
        assert "refused the lease" in refused.explanation

        await account_update(account, "topup", TopupRequest(usd=Decimal("0.005")), AccountView)
        again = greedy.model_copy(update={"id": f"budget-{uuid.uuid4().hex[:8]}"})
        assert (await run_job(dev_env.client, worker.task_queue, again)).turns == 3
        await account.terminate()


async def test_account_period_resets_spend_and_topups_on_a_durable_timer(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """When a period ends the account's timer starts the next one: spend and top-ups reset, an open
    lease keeps holding its amount, lifetime spend remains."""
    async with make_worker(dev_env.client, gateway) as worker:
        account = await start_account(
            dev_env.client, worker.task_queue, usd=Decimal(1), period=timedelta(seconds=2)
        )
        for job in ("a", "b"):
            await account_update(account, "lease", LeaseRequest(job_id=job, usd=Decimal("0.3")), LeaseReply)
        await account_update(account, "topup", TopupRequest(usd=Decimal("0.5")), AccountView)
        spent = GiveBackRequest(job_id="a", usd_spent=Decimal("0.25"))
        before = await account_update(account, "give_back", spent, AccountView)
        assert before.remaining_usd == Decimal("1.5") - Decimal("0.25") - Decimal("0.3")
        index = before.state.period_index
        after = before
        for _ in range(50):  # the period is real time here: poll (a query never skips time)
            await asyncio.sleep(0.2)
            after = await show(account)
            if after.state.period_index > index:
                break
        await account.terminate()
    assert after.state.period_index > index
    assert after.state.spent_usd == 0 and after.state.topup_usd == 0 and list(after.state.leases) == ["b"]
    assert after.remaining_usd == Decimal("0.7") and after.state.lifetime_usd == Decimal("0.25")


async def test_account_continues_as_new_without_losing_leases_spend_or_topups(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """Across continue-as-new (forced every 3 updates) open leases, spend, top-ups and the memory of
    returned jobs survive, and concurrent updates are neither lost nor counted twice."""
    async with make_worker(dev_env.client, gateway) as worker:
        account = await start_account(dev_env.client, worker.task_queue, usd=Decimal(1), updates_per_run=3)
        lease = "lease"
        for job, usd in (("j1", "0.1"), ("j2", "0.2")):
            reply = await account_update(
                account, lease, LeaseRequest(job_id=job, usd=Decimal(usd)), result_type=LeaseReply
            )
            assert reply.granted
        await account_update(account, "topup", TopupRequest(usd=Decimal("0.5")), AccountView)
        await account_update(
            account,
            "give_back",
            GiveBackRequest(job_id="j1", usd_spent=Decimal("0.05")),
            result_type=AccountView,
        )
        jobs = [f"k{i}" for i in range(8)]
        await asyncio.gather(
            *(
                account_update(
                    account, lease, LeaseRequest(job_id=j, usd=Decimal("0.01")), result_type=LeaseReply
                )
                for j in jobs
            )
        )
        again = await account_update(
            account, lease, LeaseRequest(job_id="j1", usd=Decimal("0.1")), result_type=LeaseReply
        )
        view = await show(account)
        await account.terminate()
    assert not again.granted and "already gave" in again.reason
    assert view.state.runs >= 3
    assert set(view.state.leases) == {"j2", *jobs}
    assert view.state.spent_usd == Decimal("0.05") and view.state.topup_usd == Decimal("0.5")
    assert view.remaining_usd == Decimal("1.5") - Decimal("0.05") - Decimal("0.2") - Decimal("0.08")


async def test_budget_cli_and_the_account_example(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """`harness budget create/show/topup` drive an account a worker serves, and the shipped account
    example draws on it: leased at start, given back at the end, refused once the account is spent."""
    import subprocess

    from harness.specfile import load_spec

    name = f"team-{uuid.uuid4().hex[:6]}"
    queue = f"test-{uuid.uuid4().hex[:12]}"
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "HARNESS_TASK_QUEUE": queue,
    }

    def budget(*args: str) -> subprocess.CompletedProcess[str]:
        return harness("budget", *args, env=env, timeout=60)

    activities = account_activities(dev_env.client, gateway)
    async with make_worker(dev_env.client, gateway, activities=activities, queue=queue):
        created = await asyncio.to_thread(budget, "create", name, "--usd", "0.0021", "--period", "day")
        assert created.returncode == 0, created.stderr
        again = await asyncio.to_thread(budget, "create", name, "--usd", "1")
        assert again.returncode == 1 and "already exists" in again.stderr
        spec = load_spec(ROOT / "examples" / "budget-account.yaml")
        outcomes = []
        for _ in range(2):
            job = spec.model_copy(update={"id": f"acct-{uuid.uuid4().hex[:8]}", "account": name})
            outcomes.append(await run_job(dev_env.client, queue, job))
        assert outcomes[0].stop_reason is StopReason.completed
        assert outcomes[1].stop_reason is StopReason.budget_exhausted and outcomes[1].turns == 0
        shown = await asyncio.to_thread(budget, "show", name)
        assert shown.returncode == 0 and f"account {name}" in shown.stdout and "usd" in shown.stdout
        topped = await asyncio.to_thread(budget, "topup", name, "--usd", "0.002")
        assert topped.returncode == 0, topped.stderr
        job = spec.model_copy(update={"id": f"acct-{uuid.uuid4().hex[:8]}", "account": name})
        third = await run_job(dev_env.client, queue, job)
        assert third.stop_reason is StopReason.completed
        view = await show(dev_env.client.get_workflow_handle(account_workflow_id(name)))
        await dev_env.client.get_workflow_handle(account_workflow_id(name)).terminate()
    assert not view.state.leases and view.state.topup_usd == Decimal("0.002")
    assert view.state.spent_usd == outcomes[0].ledger.cost_usd + third.ledger.cost_usd  # not the refused one


async def test_account_lease_is_given_back_when_the_job_is_aborted_or_fails(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """An aborted job (its call cut mid-flight, charged as estimated) and a failed job both give
    their lease back, and the account is charged exactly what each job's ledger says it spent."""
    activities = account_activities(dev_env.client, gateway)
    async with make_worker(dev_env.client, gateway, activities=activities) as worker:
        account = await start_account(dev_env.client, worker.task_queue, usd=Decimal(1))
        name = (await show(account)).state.name
        two = [{"name": "writer", "model": "sim:writer"}, {"name": "editor", "model": "sim:editor"}]
        ends = []
        for fault, reason in (("timeout", StopReason.aborted), ("400", StopReason.failed)):
            sim_call(sim, "/_sim/faults", {"kind": fault, "model": "editor", "count": 1})
            spec = chain({"usd": "0.01"}, agents=two).model_copy(update={"account": name})
            spec.steps[1].agent = "editor"
            handle = await start_job(dev_env.client, worker.task_queue, spec)
            if reason is StopReason.aborted:
                for _ in range(200):
                    if "editor" in ((await status_of(handle)).in_flight or ""):
                        break
                    await asyncio.sleep(0.05)
                await handle.signal("abort", AbortRequest(reason="enough"))
            result = await handle.result()
            assert result.stop_reason is reason, result.explanation
            ends.append(result)
        view = await show(account)
        await account.terminate()
    assert not view.state.leases and len(view.state.closed) == 2
    spent = [next(n for n in r.ledger.nodes if n.id == "job").spent.usd for r in ends]
    assert all(s > 0 for s in spent) and ends[0].ledger.usage.estimated
    assert view.state.spent_usd == sum(spent)


async def test_a_job_that_ends_without_giving_back_is_charged_its_whole_lease(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """A job terminated mid-call (so it never gives back) is found by the account's check of its
    leases and charged its whole lease: unknown spend is never zero."""
    activities = account_activities(dev_env.client, gateway)
    async with make_worker(dev_env.client, gateway, activities=activities) as worker:
        account = await start_account(
            dev_env.client, worker.task_queue, usd=Decimal(1), reap_every=timedelta(seconds=1)
        )
        name = (await show(account)).state.name
        sim_call(sim, "/_sim/faults", {"kind": "timeout", "model": "writer", "count": 1})
        spec = chain({"usd": "0.01"}).model_copy(update={"account": name})
        handle = await start_job(dev_env.client, worker.task_queue, spec)
        for _ in range(200):
            if (await status_of(handle)).in_flight:
                break
            await asyncio.sleep(0.05)
        assert spec.id in (await show(account)).state.leases
        await handle.terminate("gone")
        for _ in range(100):
            view = await show(account)
            if not view.state.leases:
                break
            await asyncio.sleep(0.1)
        await account.terminate()
    assert view.state.reaped == [spec.id] and view.state.closed == [spec.id]
    assert view.state.spent_usd == Decimal("0.01") and view.remaining_usd == Decimal("0.99")


async def test_degrade_without_a_cheaper_tier_cuts_output_tokens(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """Under ``degrade`` with no cheaper model resolved, a call that does not fit runs with fewer
    output tokens (halved), and the change is listed in the ledger."""
    spec = chain({"tokens": 450, "on_exhausted": "degrade"})
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
    assert result.ledger.degraded and "200 -> 100 output tokens" in result.ledger.degraded[0]
    assert result.stop_reason is StopReason.completed and result.ledger.usage.total_tokens <= 450
    assert_within_limits(result.ledger)


async def test_a_quota_wait_survives_a_worker_restart(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A job waiting for its next quota period keeps waiting when its worker stops, and a new worker
    finishes it after the period (real seconds, on the dev server).

    The wait is a durable timer: it is in the history while no worker runs, and the new worker
    goes on when it fires. (Asking the new worker whether the job still waits would race the
    period on a slow machine: the timer fires on the server whether or not a worker is there.)
    """
    spec = chain({"tokens": 50_000, "quota": {"tokens": 350, "period": "3s"}})
    queue = f"test-{uuid.uuid4().hex[:12]}"
    async with make_worker(dev_env.client, gateway, queue=queue):
        handle = await start_job(dev_env.client, queue, spec)
        await until_waiting(handle)
    between = [event.event_type for event in (await handle.fetch_history()).events]
    assert EventType.EVENT_TYPE_TIMER_STARTED in between
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED not in between
    async with make_worker(dev_env.client, gateway, queue=queue):
        result = await handle.result()
    assert result.stop_reason is StopReason.completed and result.turns == 3
    fired = [event.event_type for event in (await handle.fetch_history()).events]
    assert fired.count(EventType.EVENT_TYPE_TIMER_FIRED) >= 1
    assert_within_limits(result.ledger)
