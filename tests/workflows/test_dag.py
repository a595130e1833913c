"""The parallel DAG mode: dependencies respected, parallelism bounded, outputs flow along edges."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from contracts.jobs import StopReason, TurnRecord
from contracts.spec import parse_spec
from harness.specfile import load_spec
from tests.helpers import ROOT, make_worker, run_job, start_job, transcript_of


def dag_spec(max_concurrency: int) -> Any:
    """Four roots, a join, and a tail; the roots stream slowly so they overlap in time."""
    slow = "[[sim latency=0.3]]"
    steps: list[dict[str, Any]] = [
        {"id": f"r{i}", "agent": "a", "prompt": f"root {i} {slow}"} for i in range(4)
    ]
    steps += [
        {"id": "join", "agent": "a", "prompt": "join {input}", "depends_on": ["r0", "r1", "r2", "r3"]},
        {"id": "tail", "agent": "a", "prompt": "tail {join}", "depends_on": ["join"]},
    ]
    return parse_spec(
        {
            "id": f"dag-{uuid.uuid4().hex[:8]}",
            "mode": "dag",
            "task": "t",
            "max_concurrency": max_concurrency,
            "agents": [{"name": "a", "model": "sim:echo", "max_output_tokens": 60}],
            "steps": steps,
        }
    )


def max_overlap(turns: list[TurnRecord]) -> int:
    """The most calls in flight at one moment, from the transcript's start and end times."""
    events = sorted([(t.started_at, 1) for t in turns] + [(t.ended_at, -1) for t in turns])
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    return peak


async def test_steps_wait_for_dependencies_and_parallelism_is_bounded(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """No step starts before all it depends on has finished, and at most max_concurrency run at once."""
    spec = dag_spec(max_concurrency=2)
    async with make_worker(dev_env.client, gateway) as worker:
        handle = await start_job(dev_env.client, worker.task_queue, spec)
        result = await handle.result()
        turns = await transcript_of(handle)
    assert result.stop_reason is StopReason.completed
    by_step = {turn.step: turn for turn in turns}
    join = by_step["join"]
    assert all(by_step[f"r{i}"].ended_at <= join.started_at for i in range(4))
    assert by_step["join"].ended_at <= by_step["tail"].started_at
    assert max_overlap([by_step[f"r{i}"] for i in range(4)]) == 2
    assert result.output == result.outputs["tail"]


async def test_example_dag_runs(ts_env: WorkflowEnvironment, gateway: ModelCallActivities) -> None:
    """The shipped DAG example completes with every step run."""
    spec = load_spec(ROOT / "examples" / "dag.yaml").model_copy(update={"id": f"dagx-{uuid.uuid4().hex[:8]}"})
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
    assert result.stop_reason is StopReason.completed
    assert set(result.outputs) == {step.id for step in spec.steps}


async def test_example_groupchat_ends_with_goal_met(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """The shipped group chat example ends when the editor approves."""
    spec = load_spec(ROOT / "examples" / "groupchat.yaml").model_copy(
        update={"id": f"gc-{uuid.uuid4().hex[:8]}"}
    )
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
    assert result.stop_reason is StopReason.goal_met
    assert result.output.startswith("Draft v3")
