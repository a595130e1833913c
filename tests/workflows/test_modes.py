"""Delegation, team and group-chat modes on the time-skipping server, against the simulator."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from contracts.jobs import JobResult, StopReason
from contracts.spec import JobSpec, parse_spec
from harness.sim import SimServer
from harness.specfile import load_spec
from tests.helpers import (
    ROOT,
    make_worker,
    run_job,
    run_through_a_crash,
    sim_call,
    start_job,
    status_of,
    transcript_of,
)


def delegation_spec(**overrides: Any) -> JobSpec:
    """A planner primary with two workers; the planner makes three subtasks."""
    data: dict[str, Any] = {
        "id": f"del-{uuid.uuid4().hex[:8]}",
        "mode": "delegation",
        "task": "Write a guide to durable agents.",
        "agents": [
            {"name": "lead", "model": "sim:planner", "max_output_tokens": 600},
            {"name": "writer", "model": "sim:writer", "max_output_tokens": 120},
            {"name": "helper", "model": "sim:echo", "max_output_tokens": 120},
        ],
        "delegation": {"primary": "lead", "workers": ["writer", "helper"], "max_concurrency": 2},
        "budget": {"tokens": 60000},
    }
    data.update(overrides)
    return parse_spec(data)


async def test_delegation_plans_runs_children_reviews_and_answers(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """The primary plans, every subtask runs once as a child with a carved budget, the primary
    reviews (plan of finished ids only) and writes the final answer; children's spend is in the ledger."""
    spec = delegation_spec()
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
        turns = await transcript_of(ts_env.client.get_workflow_handle(spec.id or ""))
        child = await ts_env.client.get_workflow_handle(f"{spec.id}/t1-r1", result_type=JobResult).result()
    assert result.stop_reason is StopReason.completed, result.explanation
    assert sorted(result.outputs) == ["t1", "t2", "t3"]
    assert [turn.step for turn in turns] == ["plan-r1", "plan-r2", "final"]
    assert child.mode == "subtask" and child.ledger.limit_tokens is not None
    assert child.ledger.limit_tokens <= 60000 * 0.5 / 3
    assert result.ledger.calls == 6  # plan, review, final + three children
    assert set(result.ledger.per_agent) == {"lead", "writer", "helper"}
    carved = {node.id: node for node in result.ledger.nodes if node.id.startswith("child:")}
    assert len(carved) == 3 and all(node.carved and node.closed for node in carved.values())
    assert (
        next(n for i, n in carved.items() if i.endswith("t1-r1")).spent.tokens
        == child.ledger.usage.total_tokens
    )


async def test_failed_child_is_reported_to_the_primary_and_retried(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """A child whose call fails non-retryably ends 'failed'; the failure reaches the primary's review,
    which retries the subtask (on the other worker) and the job still completes."""
    sim_call(sim, "/_sim/faults", {"kind": "400", "model": "writer", "count": 1})
    spec = delegation_spec(
        delegation={"primary": "lead", "workers": ["writer", "helper"], "max_concurrency": 1}
    )
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
        turns = await transcript_of(ts_env.client.get_workflow_handle(spec.id or ""))
    assert result.stop_reason is StopReason.completed, result.explanation
    failed = result.evidence["failed_runs"]
    assert len(failed) == 1 and failed[0].endswith("-r1")
    review = next(turn for turn in turns if turn.step == "plan-r2")
    assert review.prompt_preview.startswith("Failed subtasks:")
    subtask = failed[0].rsplit("/", 1)[1].removesuffix("-r1")
    assert f"- {subtask}: failed: " in review.prompt_preview and "BadRequest" in review.prompt_preview
    assert sorted(result.outputs) == ["t1", "t2", "t3"]
    assert result.evidence["given_up"] == []


async def test_example_delegation_runs(ts_env: WorkflowEnvironment, gateway: ModelCallActivities) -> None:
    """The shipped delegation example completes with every planned subtask done."""
    spec = load_spec(ROOT / "examples" / "delegation.yaml").model_copy(
        update={"id": f"delx-{uuid.uuid4().hex[:8]}"}
    )
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
    assert result.stop_reason is StopReason.completed
    assert len(result.outputs) == 3


def chat_spec(policy: str, rounds: int) -> JobSpec:
    """Three agents with replies of different lengths, no goal: the chat runs ``rounds`` rounds."""
    return parse_spec(
        {
            "id": f"chat-{uuid.uuid4().hex[:8]}",
            "mode": "groupchat",
            "task": "Discuss durable scheduling of agent work.",
            "agents": [
                {"name": "writer", "model": "sim:writer", "max_output_tokens": 120},
                {"name": "editor", "model": "sim:editor", "max_output_tokens": 60},
                {"name": "echo", "model": "sim:echo", "max_output_tokens": 80},
            ],
            "chat": {"turn_policy": policy},
            "termination": {"max_rounds": rounds},
        }
    )


async def test_groupchat_round_robin_keeps_a_fixed_rotation(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """Under round robin every round is one turn per agent, always in roster order."""
    spec = chat_spec("round_robin", rounds=3)
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
        turns = await transcript_of(ts_env.client.get_workflow_handle(spec.id or ""))
    assert result.stop_reason is StopReason.max_rounds
    assert [turn.agent for turn in turns] == ["writer", "editor", "echo"] * 3


async def test_groupchat_fair_share_gives_the_turn_to_the_most_owed_agent(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """Under fair share each turn goes to the agent with the fewest tokens so far (ties: roster order),
    so token shares stay within one turn of each other."""
    spec = chat_spec("fair_share", rounds=4)
    names = [agent.name for agent in spec.agents]
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
        turns = await transcript_of(ts_env.client.get_workflow_handle(spec.id or ""))
    assert result.stop_reason is StopReason.max_rounds
    spent = dict.fromkeys(names, 0)
    for turn in turns:
        least = min(spent.values())
        assert turn.agent == next(name for name in names if spent[name] == least)
        spent[turn.agent] += turn.usage.total_tokens
    largest_turn = max(turn.usage.total_tokens for turn in turns)
    assert max(spent.values()) - min(spent.values()) <= largest_turn
    assert {a: u.total_tokens for a, u in result.ledger.per_agent.items()} == spent


@pytest.mark.e2e
async def test_delegation_resumes_after_sigkill_without_rerunning_finished_children(
    dev_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """A delegation whose worker is SIGKILLed while a child streams finishes on a new worker: every
    subtask runs to the end once (one completed reply per call in the ledger), none is planned twice."""
    sim_call(sim, "/_sim/reset", {})
    queue = f"crash-del-{uuid.uuid4().hex[:8]}"
    spec = delegation_spec(
        task="Write a guide to durable agents. [[sim latency=0 tps=20 tokens=40]]",
        delegation={"primary": "lead", "workers": ["helper"], "max_concurrency": 1},
    )

    async def kill_when(handle: WorkflowHandle[Any, JobResult]) -> None:
        child = dev_env.client.get_workflow_handle(f"{spec.id}/t1-r1")
        for _ in range(300):  # wait until the first child is done and the next one streams
            try:
                await child.result()
                break
            except Exception:  # not started yet
                await asyncio.sleep(0.1)

    result, turns = await run_through_a_crash(dev_env, sim, queue, spec, kill_when, settle=1.0, within=90)
    assert result.stop_reason is StopReason.completed, result.explanation
    assert sorted(result.outputs) == ["t1", "t2", "t3"]
    assert [turn.step for turn in turns] == ["plan-r1", "plan-r2", "final"]
    tally = sim_call(sim, "/_sim/tally")["total"]
    assert tally["completed"] == 6, tally  # 3 primary turns + 3 children, none repeated


async def test_aborting_a_delegation_aborts_its_running_children(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """An abort of the parent reaches every running child as an abort: each ends 'aborted', the
    parent ends 'aborted' too, and the children's partial spend is on the parent's ledger."""
    from contracts.controls import AbortRequest

    spec = delegation_spec(task="Write a guide. [[sim latency=2 tps=0]]")
    async with make_worker(ts_env.client, gateway) as worker:
        handle = await start_job(ts_env.client, worker.task_queue, spec)
        running = ""
        for _ in range(200):
            progress = await status_of(handle)
            if "running" in (progress.step or ""):
                running = (progress.step or "").split("running ")[1].split(",")[0].split(";")[0]
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        await handle.signal("abort", AbortRequest(reason="enough"))
        result = await handle.result()
        child_id = f"{spec.id}/{running}-r1"
        child = await ts_env.client.get_workflow_handle(child_id, result_type=JobResult).result()
    assert result.stop_reason is StopReason.aborted
    assert child.stop_reason is StopReason.aborted and "parent stopping" in child.explanation
    assert child.ledger.usage.total_tokens > 0  # the cut call is charged, never free
    workers = sum(usage.total_tokens for name, usage in result.ledger.per_agent.items() if name != "lead")
    assert workers >= child.ledger.usage.total_tokens
