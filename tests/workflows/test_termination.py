"""Semantic termination in a running job: goals, livelock, plateau and durable deadlines."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from temporalio.testing import WorkflowEnvironment

from activities.checks import CheckActivities, CheckRegistry
from activities.model_call import ModelCallActivities
from contracts.jobs import JobResult, JobStatus, StopReason, TurnRecord
from contracts.spec import JobSpec, parse_spec
from harness.specfile import load_spec
from tests.helpers import ROOT, make_worker, run_job, start_job, status_of, transcript_of


def chat_spec(editor: str, **overrides: Any) -> JobSpec:
    """A writer/editor group chat on the simulator, judged by sim:judge, with convergence watched."""
    data: dict[str, Any] = {
        "id": f"chat-{uuid.uuid4().hex[:8]}",
        "mode": "groupchat",
        "task": "Write a blurb about durable agents.",
        "agents": [
            {"name": "writer", "model": "sim:writer", "max_output_tokens": 200},
            {"name": "editor", "model": editor, "max_output_tokens": 60},
        ],
        "goal": {
            "rule": "weighted",
            "threshold": 0.8,
            "checks": [{"kind": "judge", "model": "sim:judge", "rubric": "publishable"}],
        },
        "termination": {"max_rounds": 20, "convergence": {"plateau_rounds": 4}},
    }
    data.update(overrides)
    return parse_spec(data)


async def run(
    env: WorkflowEnvironment, gateway: ModelCallActivities, spec: JobSpec
) -> tuple[JobResult, list[TurnRecord]]:
    """Run a group chat to its end; return the result and the transcript (queried while a worker is up)."""
    async with make_worker(env.client, gateway) as worker:
        result = await run_job(env.client, worker.task_queue, spec)
        return result, await transcript_of(env.client.get_workflow_handle(spec.id or ""))


async def test_converging_pair_ends_with_goal_met(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """The converging writer/editor reaches the judge's threshold and stops with goal_met, early."""
    result, _ = await run(ts_env, gateway, chat_spec("sim:editor"))
    assert result.stop_reason is StopReason.goal_met
    assert result.output.startswith("Draft v3")
    assert result.evidence["rounds_run"] == 3
    assert result.evidence["goal"]["met"] is True


async def test_livelock_is_caught_within_two_rounds_and_best_draft_returned(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """The oscillating pair ends with livelock within two rounds of the cycle's start (round 2),
    returns its best draft rather than its last, and reports the evidence and what it saved."""
    spec = chat_spec("sim:editor-livelock")
    result, transcript = await run(ts_env, gateway, spec)
    assert result.stop_reason is StopReason.livelock
    rounds = result.evidence["rounds_run"]
    assert rounds <= 2 + 2
    assert result.evidence["cycle_length"] in (2, 3)
    assert result.evidence["tokens_saved_estimate"] > 0
    assert "saving about" in result.explanation
    drafts = [turn.text for turn in transcript if turn.agent == "writer"]
    assert result.output in drafts
    assert result.output.startswith("Draft (casual)")  # scored 0.5: beats v1 (0.4), ties later copies


async def test_plateau_stops_when_scores_stop_rising(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A chat whose score never rises stops with plateau after the configured rounds, not max_rounds."""
    spec = chat_spec(
        "sim:echo",
        agents=[
            {"name": "writer", "model": "sim:echo", "max_output_tokens": 40},
            {"name": "editor", "model": "sim:echo", "max_output_tokens": 40},
        ],
        termination={"max_rounds": 20, "convergence": {"plateau_rounds": 3, "similarity": 0.99}},
    )
    result, _ = await run(ts_env, gateway, spec)
    assert result.stop_reason in (StopReason.plateau, StopReason.livelock)
    assert result.evidence["rounds_run"] < 20


async def test_deadline_counts_from_job_start_across_a_worker_restart(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A paused job's durable deadline fires at start + deadline even though the worker was replaced."""
    spec = chat_spec("sim:editor", deadline="1h")
    client = ts_env.client
    # No sticky cache: the Java test server does not move a sticky task to the normal queue when
    # the worker that held it is gone, which a real server does.
    async with make_worker(client, gateway, max_cached_workflows=0) as worker:
        queue = worker.task_queue
        handle = await start_job(client, queue, spec, start_signal="pause")
        for _ in range(100):  # until the job sits paused, waiting on its deadline timer
            if (await status_of(handle)).status is JobStatus.paused:
                break
            await asyncio.sleep(0.1)
    async with make_worker(client, gateway, queue=queue):
        result = await handle.result()  # time skips to the deadline
    assert result.stop_reason is StopReason.deadline
    description = await handle.describe()
    assert description.close_time is not None and description.start_time is not None
    elapsed = description.close_time - description.start_time
    assert timedelta(minutes=59) <= elapsed <= timedelta(minutes=61)


def test_livelock_example_is_valid() -> None:
    """The livelock example loads (the e2e run is in the README walkthrough)."""
    spec = load_spec(ROOT / "examples" / "livelock.yaml")
    assert spec.termination.convergence is not None


async def test_programmatic_check_runs_as_an_activity(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A goal naming a registered Python check runs it on the worker as an activity; the job ends
    with goal_met once the check passes (here: the editor's turn says APPROVED)."""
    registry = CheckRegistry()

    @registry.register("editor_approved")
    def editor_approved(text: str) -> bool:
        return "APPROVED" in text

    spec = chat_spec(
        "sim:editor",
        goal={"checks": [{"kind": "function", "value": "editor_approved", "agent": "editor"}]},
    )
    checks = CheckActivities(registry)
    activities = [gateway.model_call, gateway.resolve_models, checks.run_check]
    async with make_worker(ts_env.client, gateway, activities=activities) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
    assert result.stop_reason is StopReason.goal_met
    assert result.evidence["rounds_run"] == 3
    assert result.evidence["goal"]["outcomes"][0]["detail"] == "editor_approved"
