"""Routing and cascades beyond steps: an agent's ``route`` or ``cascade`` in group chat and delegation.

The simulator's tier models answer "PASS" or "FAIL" by a deterministic draw from the last user
message and the model (see ``harness.sim._scenarios``); the comment by each task says which tiers
pass on the prompt its routed turn sees.
"""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from activities.routing_stats import RoutingStatsActivities
from contracts.jobs import JobResult, StopReason, TurnRecord
from contracts.spec import JobSpec, parse_spec
from harness.sim import SimServer
from tests.helpers import make_worker, sim_call, start_job, transcript_of

TIERS = ["sim:tier-small", "sim:tier-medium", "sim:tier-large"]
PASS_CHECK = {"kind": "contains", "value": "PASS"}
CASCADE: dict[str, Any] = {"models": TIERS, "checks": [PASS_CHECK], "learn": False}


async def run(
    env: WorkflowEnvironment, gateway: ModelCallActivities, spec: JobSpec, child: str | None = None
) -> tuple[JobResult, list[TurnRecord], list[TurnRecord]]:
    """Run ``spec`` to its end; return its result, its transcript and child ``child``'s transcript."""
    stats = RoutingStatsActivities(env.client, workflow_id=f"stats-{uuid.uuid4().hex[:8]}")
    activities = [gateway.model_call, gateway.resolve_models, stats.routing_stats]
    async with make_worker(env.client, gateway, activities=activities) as worker:
        handle = await start_job(env.client, worker.task_queue, spec)
        result = await handle.result()
        turns = await transcript_of(handle)
        child_turns = await transcript_of(env.client.get_workflow_handle(child)) if child else []
    return result, turns, child_turns


def called(turns: list[TurnRecord]) -> list[str]:
    """The models of the routed calls, in order (checks left out)."""
    return [t.model for t in turns if t.routing and t.routing["role"] == "call"]


async def test_a_routed_agent_speaks_in_group_chat_on_the_cascades_choice(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """In a group chat an agent with a cascade climbs on a failed check within its turn, only the kept
    reply joins the conversation, and a plain agent beside it speaks on its own model unrouted."""
    sim_call(sim, "/_sim/reset", {})
    spec = parse_spec(
        {
            "id": f"chat-route-{uuid.uuid4().hex[:8]}",
            "mode": "groupchat",
            "task": "Solve puzzle 3: difficulty=0.7.",  # tier-small FAIL, tier-medium PASS
            "agents": [
                {"name": "solver", "model": "sim:tier-small", "max_output_tokens": 100, "cascade": CASCADE},
                {"name": "note", "model": "sim:echo", "max_output_tokens": 60},
            ],
            "termination": {"max_rounds": 1},
        }
    )
    result, turns, _ = await run(ts_env, gateway, spec)
    assert result.stop_reason is StopReason.max_rounds, result.explanation
    assert called(turns) == TIERS[:2]
    assert [(t.agent, t.model, t.routing is None) for t in turns] == [
        ("solver", "sim:tier-small", False),
        ("solver", "sim:tier-medium", False),
        ("note", "sim:echo", True),
    ]
    [record] = result.routing
    assert record.step == "round 1: solver"
    assert [(a.model, a.passed) for a in record.attempts] == [(TIERS[0], False), (TIERS[1], True)]
    assert record.outcome == "passed"
    assert result.outputs["solver"].startswith("PASS: tier-medium")
    heard = turns[2].prompt_preview  # what the note agent was told: the kept reply, not the failed one
    assert "[solver] PASS: tier-medium" in heard
    assert "FAIL" not in heard
    assert result.ledger.calls == sim_call(sim, "/_sim/tally")["total"]["completed"] == 3


async def test_a_delegation_workers_cascade_escalates_in_its_subtask(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A worker with a cascade runs its subtask as a child job that climbs the ladder on failed checks;
    the child's routing record joins the parent's result and the parent keeps the passing output."""
    job_id = f"dlg-route-{uuid.uuid4().hex[:8]}"
    spec = parse_spec(
        {
            "id": job_id,
            "mode": "delegation",
            # One subtask, whose prompt tier-small and tier-medium FAIL and tier-large PASSes.
            "task": "Solve puzzle 2: difficulty=0.7. subtasks=1",
            "agents": [
                {"name": "lead", "model": "sim:planner", "max_output_tokens": 600},
                {"name": "solver", "model": "sim:tier-small", "max_output_tokens": 100, "cascade": CASCADE},
            ],
            "delegation": {"primary": "lead", "max_rounds": 1},
        }
    )
    result, turns, child_turns = await run(ts_env, gateway, spec, child=f"{job_id}/t1-r1")
    assert result.stop_reason is StopReason.completed, result.explanation
    assert [t.step for t in turns] == ["plan-r1", "final"]
    assert all(t.routing is None for t in turns)  # the primary has no routing settings
    assert called(child_turns) == TIERS
    [record] = result.routing
    assert record.step == "t1-r1/subtask"
    assert [(a.model, a.passed) for a in record.attempts] == [
        (TIERS[0], False),
        (TIERS[1], False),
        (TIERS[2], True),
    ]
    assert result.outputs["t1"].startswith("PASS: tier-large")
    assert result.ledger.per_agent["solver"].requests == 3


async def test_a_routed_primary_plans_on_the_routers_choice(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A delegation primary with a route has its structured plan and its final answer routed: the
    cheaper candidate that cannot meet the need is passed over, and the plan still parses."""
    route = {"candidates": ["sim:echo", "sim:planner"], "learn": False}
    spec = parse_spec(
        {
            "id": f"dlg-primary-{uuid.uuid4().hex[:8]}",
            "mode": "delegation",
            "task": "Write a guide to durable agents. subtasks=2",
            "agents": [
                {"name": "lead", "model": "sim:echo", "max_output_tokens": 600, "route": route},
                {"name": "writer", "model": "sim:writer", "max_output_tokens": 80},
            ],
            "delegation": {"primary": "lead", "max_rounds": 1},
        }
    )
    result, turns, _ = await run(ts_env, gateway, spec)
    assert result.stop_reason is StopReason.completed, result.explanation
    assert sorted(result.outputs) == ["t1", "t2"]  # sim:echo answers no plan: the planner planned
    assert [(t.step, t.model) for t in turns] == [("plan-r1", "sim:planner"), ("final", "sim:planner")]
    assert [r.step for r in result.routing] == ["plan-r1", "final"]
    assert all(r.decision["choice"] == "sim:planner" for r in result.routing)


async def test_a_chats_routing_records_survive_continue_as_new(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """The routing records are part of the job's state: a chat that continues as new every two turns
    still reports one record per routed turn, from every run."""
    spec = parse_spec(
        {
            "id": f"chat-route-can-{uuid.uuid4().hex[:8]}",
            "mode": "groupchat",
            "task": "Solve puzzle 3: difficulty=0.7.",
            "agents": [
                {"name": "solver", "model": "sim:tier-small", "max_output_tokens": 100, "cascade": CASCADE},
                {"name": "note", "model": "sim:echo", "max_output_tokens": 60},
            ],
            "termination": {"max_rounds": 3},
            "chat": {"turns_per_run": 2},
        }
    )
    stats = RoutingStatsActivities(ts_env.client, workflow_id=f"stats-{uuid.uuid4().hex[:8]}")
    activities = [gateway.model_call, gateway.resolve_models, stats.routing_stats]
    async with make_worker(ts_env.client, gateway, activities=activities) as worker:
        handle = await start_job(ts_env.client, worker.task_queue, spec)
        result = await handle.result()
        first = ts_env.client.get_workflow_handle(spec.id or "", run_id=handle.first_execution_run_id)
        events = [event.event_type for event in (await first.fetch_history()).events]
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW in events
    assert result.stop_reason is StopReason.max_rounds, result.explanation
    assert [record.step for record in result.routing] == [f"round {n}: solver" for n in (1, 2, 3)]
