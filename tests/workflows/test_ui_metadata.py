"""What the Temporal Web UI shows of a job, read back from the real dev server: the static summary and
details a job (and each child job) starts with, the summaries of its timers (a gate's, the deadline's)
and of its model calls (a group chat's name the round)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from contracts.controls import GateDecision
from contracts.display import timer_at
from contracts.jobs import JobProgress, StopReason
from contracts.spec import JobSpec, parse_spec
from harness.client import start_job
from harness.specfile import load_spec
from tests.helpers import ROOT, make_worker, status_of, until

GATED: dict[str, Any] = {
    "name": "ui-metadata",
    "mode": "sequential",
    "task": "Write one line about durable timers,\n  for the   release notes.",
    "agents": [{"name": "writer", "model": "sim:writer", "max_output_tokens": 40}],
    "steps": [
        {"id": "draft", "agent": "writer", "prompt": "{task}"},
        {"id": "publish", "agent": "writer", "prompt": "Polish: {input}"},
    ],
    "gates": [{"name": "publish-ok", "before_step": "publish", "timeout": "2h"}],
    "budget": {"tokens": 5000, "usd": "0.50"},
    "deadline": "1d",
}


async def summaries(client: Client, handle: WorkflowHandle[Any, Any], kind: str) -> list[str]:
    """The decoded user-metadata summaries of the history's events whose attributes are ``kind``
    (``timer_started_event_attributes``, ``activity_task_scheduled_event_attributes``)."""
    found = []
    async for event in handle.fetch_history_events():
        if event.HasField(kind) and event.user_metadata.HasField("summary"):
            found.append(await decoded(client, event))
    return found


async def decoded(client: Client, event: HistoryEvent) -> str:
    (text,) = await client.data_converter.decode([event.user_metadata.summary])
    assert isinstance(text, str)
    return text


async def test_a_job_starts_with_its_summary_and_details_and_its_timers_say_what_they_wait_for(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """``start_job`` gives the workflow a one-line summary (mode, the task on one line, the budget)
    and markdown details (agents and models, budget and policy, deadline, gates, task); the gate's
    timer is summarised with its name, default and the time it ends, the model call's deadline timer
    with the deadline's time, and the model call itself with agent, model and step."""
    client = dev_env.client
    spec = parse_spec({**GATED, "id": f"ui-{uuid.uuid4().hex[:8]}"})
    async with make_worker(client, gateway) as worker:
        handle = await start_job(client, spec, queue=worker.task_queue)
        described = await handle.describe()
        progress: JobProgress = await until(lambda: _gated(handle))
        timers: list[str] = await until(lambda: _gate_timer(client, handle))
        calls = await summaries(client, handle, "activity_task_scheduled_event_attributes")
        await handle.execute_update("approve", GateDecision(gate="publish-ok", by="test"), result_type=str)
        result = await handle.result()
    assert result.stop_reason is StopReason.completed

    summary = await described.static_summary()
    details = await described.static_details()
    assert summary == (
        "sequential: Write one line about durable timers, for the release notes. · budget 5000 tokens, $0.50"
    )
    assert details is not None
    assert "- **agents** writer on sim:writer" in details.splitlines()
    assert "- **budget** 5000 tokens, $0.50; when spent: stop" in details.splitlines()
    assert "- **deadline** 1d from the start" in details.splitlines()
    assert "- **gates** publish-ok" in details.splitlines()

    (record,) = progress.gates
    gate_ends = timer_at(record.opened_at + timedelta(hours=2))
    assert f"gate publish-ok: rejected if undecided by {gate_ends}" in timers
    started = described.start_time
    assert started is not None
    deadline = f"job deadline {timer_at(started + timedelta(days=1))}"
    assert f"{deadline} (during writer on sim:writer (step draft))" in timers
    assert "writer on sim:writer (step draft)" in calls


async def _gated(handle: WorkflowHandle[Any, Any]) -> JobProgress | None:
    progress = await status_of(handle)
    return progress if progress.pending_gates else None


async def _gate_timer(client: Client, handle: WorkflowHandle[Any, Any]) -> list[str] | None:
    """The timers' summaries once the gate's timer is in history."""
    timers = await summaries(client, handle, "timer_started_event_attributes")
    return timers if any(timer.startswith("gate ") for timer in timers) else None


def example(name: str) -> JobSpec:
    spec = load_spec(str(ROOT / "examples" / f"{name}.yaml"))
    return spec.model_copy(update={"id": f"{name}-{uuid.uuid4().hex[:8]}"})


async def test_a_group_chats_model_calls_name_their_round(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """Every model call of a group chat is summarised '<agent> on <model> (round N)', N its round."""
    client = dev_env.client
    spec = example("groupchat")
    async with make_worker(client, gateway) as worker:
        handle = await start_job(client, spec, queue=worker.task_queue)
        result = await handle.result()
        calls = await summaries(client, handle, "activity_task_scheduled_event_attributes")
    turns = [call for call in calls if " on sim:" in call]
    assert len(turns) == result.ledger.calls >= 2
    rounds = result.turns // 2
    expected = [
        f"{agent} on sim:{agent} (round {n})" for n in range(1, rounds + 1) for agent in ("writer", "editor")
    ]
    assert turns == expected


async def test_child_jobs_start_with_their_place_summary_and_details(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A delegation's subtasks start with a summary naming the subtask and round, the child's mode,
    task and carved budget, and details of their own."""
    client = dev_env.client
    spec = example("delegation")
    async with make_worker(client, gateway) as worker:
        handle = await start_job(client, spec, queue=worker.task_queue)
        await handle.result()
        children = [
            event.start_child_workflow_execution_initiated_event_attributes.workflow_id
            async for event in handle.fetch_history_events()
            if event.HasField("start_child_workflow_execution_initiated_event_attributes")
        ]
        assert children
        for child_id in children:
            subtask, round_no = child_id.rsplit("/", 1)[1].rsplit("-r", 1)
            described = await client.get_workflow_handle(child_id).describe()
            summary = await described.static_summary()
            details = await described.static_details()
            assert summary is not None and details is not None
            assert summary.startswith(f"subtask {subtask} (round {round_no}) · sequential: "), summary
            assert " · budget " in summary and "tokens" in summary
            assert "- **budget** " in details and "- **agents** " in details
