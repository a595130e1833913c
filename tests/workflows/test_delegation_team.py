"""Hierarchical delegation and the peer-to-peer team, end to end against the simulator."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.model_call import ModelCallActivities
from activities.team_board import TeamBoardActivities
from contracts.controls import AbortRequest
from contracts.jobs import JobResult, StopReason
from contracts.names import MODEL_CALL_ACTIVITY
from contracts.spec import JobSpec, parse_spec
from harness.sim import SimServer
from harness.specfile import load_spec
from tests.helpers import ROOT, make_worker, run_job, sim_call, start_job, transcript_of
from worker import workflow_runner
from workflows import ALL_WORKFLOWS
from workflows.team import follow_ups


def delegation(**overrides: Any) -> JobSpec:
    """A sim:planner primary (three subtasks) and one sim:writer worker, with a token budget."""
    data: dict[str, Any] = {
        "id": f"dlg-{uuid.uuid4().hex[:8]}",
        "mode": "delegation",
        "task": "Write a guide to durable agents.",
        "agents": [
            {"name": "lead", "model": "sim:planner", "max_output_tokens": 600},
            {"name": "writer", "model": "sim:writer", "max_output_tokens": 120},
        ],
        "delegation": {"primary": "lead", "max_concurrency": 2},
        "budget": {"tokens": 60000},
    }
    data.update(overrides)
    return parse_spec(data)


def team(tasks: list[str], **overrides: Any) -> JobSpec:
    """Two members on one board."""
    data: dict[str, Any] = {
        "id": f"team-{uuid.uuid4().hex[:8]}",
        "mode": "team",
        "task": "A briefing on durable agents.",
        "agents": [
            {"name": "writer", "model": "sim:writer", "max_output_tokens": 120},
            {"name": "echo", "model": "sim:echo", "max_output_tokens": 120},
        ],
        "team": {"tasks": tasks, "max_tasks": 10},
        "budget": {"tokens": 60000},
    }
    data.update(overrides)
    return parse_spec(data)


async def test_delegation_plans_delegates_to_children_reviews_and_answers(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """Plan, a child workflow per subtask, review, final answer; the ledger holds the children's spend."""
    spec = delegation()
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
        parent = ts_env.client.get_workflow_handle(spec.id or "")
        turns = await transcript_of(parent)
        children = [
            await ts_env.client.get_workflow_handle(f"{spec.id}/t{i}-r1", result_type=JobResult).result()
            for i in (1, 2, 3)
        ]
        first = ts_env.client.get_workflow_handle(f"{spec.id}/t1-r1")
        described = await first.describe()
        history = await first.fetch_history()
    assert result.stop_reason is StopReason.completed, result.explanation
    assert sorted(result.outputs) == ["t1", "t2", "t3"]
    assert [turn.step for turn in turns] == ["plan-r1", "plan-r2", "final"]
    assert described.workflow_type == "SubtaskJob"
    # The child was handed the models its parent resolved: its one activity is its model call.
    scheduled = [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert scheduled == [MODEL_CALL_ACTIVITY]
    assert described.raw_description.workflow_execution_info.parent_execution.workflow_id == spec.id
    own = sum(turn.usage.total_tokens for turn in turns)
    spent_by_children = sum(child.ledger.usage.total_tokens for child in children)
    assert spent_by_children > 0
    assert result.ledger.usage.total_tokens == own + spent_by_children
    assert result.ledger.calls == len(turns) + 3
    assert result.ledger.per_agent["writer"].total_tokens == spent_by_children


async def test_failed_child_is_reported_to_the_primary_and_the_job_completes(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """A child refused with HTTP 400 fails; the primary's review names it and the job still completes."""
    sim_call(sim, "/_sim/faults", {"kind": "400", "model": "writer", "count": 1})
    spec = delegation(delegation={"primary": "lead", "max_concurrency": 1})
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
        turns = await transcript_of(ts_env.client.get_workflow_handle(spec.id or ""))
    assert result.stop_reason is StopReason.completed, result.explanation
    assert len(result.evidence["failed_runs"]) == 1
    review = next(turn for turn in turns if turn.step == "plan-r2")
    assert review.prompt_preview.startswith("Failed subtasks:")


def test_follow_up_lines_become_tasks() -> None:
    """Only lines that start with FOLLOW-UP: are follow-up tasks, stripped of the marker."""
    assert follow_ups("done\nFOLLOW-UP: write the summary\n see FOLLOW-UP: no") == ["write the summary"]


async def test_team_claims_each_task_once_runs_follow_ups_and_ends_when_the_board_is_empty(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """Every task is claimed exactly once, a posted follow-up runs, and the job ends with the board empty."""
    tasks = [
        'Outline it. [[sim reply="done\nFOLLOW-UP: write the summary"]]',
        "List three facts.",
        "Draft the opening.",
    ]
    spec = team(tasks)
    board = TeamBoardActivities(dev_env.client)
    activities = [gateway.model_call, gateway.resolve_models, board.team_board]
    async with make_worker(dev_env.client, gateway, activities=activities) as worker:
        result = await run_job(dev_env.client, worker.task_queue, spec)
        members = [
            await dev_env.client.get_workflow_handle(f"{spec.id}--{name}", result_type=JobResult).result()
            for name in ("writer", "echo")
        ]
    assert result.stop_reason is StopReason.completed, result.explanation
    assert sorted(result.outputs) == ["task1", "task2", "task3", "task4"]
    assert result.outputs["task1"] == "done\nFOLLOW-UP: write the summary"
    claimed = [claim.split(":")[0] for claim in result.evidence["claims"]]
    assert Counter(claimed) == {f"task{i}": 1 for i in range(1, 5)}
    assert sum(len(member.outputs) for member in members) == 4
    assert result.ledger.calls == 4 and result.turns == 4


async def test_example_team_runs(dev_env: WorkflowEnvironment, gateway: ModelCallActivities) -> None:
    """The shipped team example completes with its follow-up task done."""
    spec = load_spec(ROOT / "examples" / "team.yaml").model_copy(update={"id": f"tmx-{uuid.uuid4().hex[:8]}"})
    board = TeamBoardActivities(dev_env.client)
    activities = [gateway.model_call, gateway.resolve_models, board.team_board]
    async with make_worker(dev_env.client, gateway, activities=activities) as worker:
        result = await run_job(dev_env.client, worker.task_queue, spec)
    assert result.stop_reason is StopReason.completed, result.explanation
    assert len(result.outputs) == 4


async def test_aborting_a_team_stops_its_members_and_charges_their_spend(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """An abort ends the team 'aborted' within seconds: members are aborted mid-call, not awaited."""
    spec = team(["Think long. [[sim latency=30]]"])
    board = TeamBoardActivities(dev_env.client)
    activities = [gateway.model_call, gateway.resolve_models, board.team_board]
    async with make_worker(dev_env.client, gateway, activities=activities) as worker:
        handle = await start_job(dev_env.client, worker.task_queue, spec)
        await asyncio.sleep(2)
        await handle.signal("abort", AbortRequest(reason="enough"))
        result = await asyncio.wait_for(handle.result(), timeout=20)
    assert result.stop_reason is StopReason.aborted
    assert result.outputs == {}
    assert result.ledger.usage.total_tokens > 0  # the member's cut-off call, charged to the team


async def test_team_histories_replay_deterministically(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """The coordinator's and a member's histories replay without a nondeterminism error."""
    spec = team(['Outline it. [[sim reply="done\nFOLLOW-UP: write the summary"]]', "List three facts."])
    board = TeamBoardActivities(dev_env.client)
    activities = [gateway.model_call, gateway.resolve_models, board.team_board]
    async with make_worker(dev_env.client, gateway, activities=activities) as worker:
        await run_job(dev_env.client, worker.task_queue, spec)
    replayer = Replayer(
        workflows=ALL_WORKFLOWS, data_converter=pydantic_data_converter, workflow_runner=workflow_runner()
    )
    for workflow_id in (spec.id or "", f"{spec.id}--writer"):
        history = await dev_env.client.get_workflow_handle(workflow_id).fetch_history()
        replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert replayed.replay_failure is None, replayed.replay_failure


async def test_team_resumes_on_a_new_worker_without_repeating_finished_tasks(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A worker stopped mid-job is replaced; the team finishes with each task claimed and charged once."""
    spec = team(["Quick one.", "Slow one. [[sim latency=3]]", "Another slow one. [[sim latency=3]]"])
    board = TeamBoardActivities(dev_env.client)
    activities = [gateway.model_call, gateway.resolve_models, board.team_board]
    queue = f"test-{uuid.uuid4().hex[:12]}"
    async with make_worker(dev_env.client, gateway, activities=activities, queue=queue):
        handle = await start_job(dev_env.client, queue, spec)
        await asyncio.sleep(1.5)
    async with make_worker(dev_env.client, gateway, activities=activities, queue=queue):
        result = await asyncio.wait_for(handle.result(), timeout=40)
    assert result.stop_reason is StopReason.completed, result.explanation
    claimed = [claim.split(":")[0] for claim in result.evidence["claims"]]
    assert Counter(claimed) == {"task1": 1, "task2": 1, "task3": 1}
    assert sorted(result.outputs) == ["task1", "task2", "task3"]
