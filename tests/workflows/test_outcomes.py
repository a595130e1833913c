"""What an ended job's result says about how it ended: a step skipped at its gate is named with the
gate's decision, and the result keeps what ``harness status`` shows of an ended job (gates, the
priority set while it ran, interrupts, steps), readable in results written before it did."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from contracts.controls import GateDecision, InterruptRequest, SetPriorityRequest
from contracts.jobs import JobProgress, JobResult, StopReason
from contracts.spec import JobSpec, parse_spec
from tests.helpers import ROOT, make_worker, run_job, start_job, status_of, until

STEPS = [
    {"id": "one", "agent": "writer", "prompt": "{task}"},
    {"id": "two", "agent": "writer", "prompt": "Improve: {input}"},
]


def job(mode: str, steps: list[dict[str, Any]], **overrides: Any) -> JobSpec:
    """A job for one writer on the simulator, in ``mode`` (sequential or dag)."""
    data: dict[str, Any] = {
        "id": f"out-{uuid.uuid4().hex[:8]}",
        "mode": mode,
        "task": "Write about outcomes.",
        "agents": [{"name": "writer", "model": "sim:writer", "max_output_tokens": 60}],
        "steps": steps,
    }
    data.update(overrides)
    return parse_spec(data)


@pytest.mark.parametrize("mode", ["sequential", "dag"])
async def test_a_step_skipped_at_its_gate_is_named_in_the_explanation(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, mode: str
) -> None:
    """A step whose gate took its reject default is not counted as run: the explanation says how
    many steps ran of how many, which step was skipped, at which gate and that nobody decided."""
    gate = {"name": "check", "before_step": "two", "timeout": "2h", "default": "reject"}
    async with make_worker(ts_env.client, gateway) as worker:
        skipped = await run_job(ts_env.client, worker.task_queue, job(mode, STEPS, gates=[gate]))
        every = await run_job(ts_env.client, worker.task_queue, job(mode, STEPS))
        single = await run_job(ts_env.client, worker.task_queue, job(mode, STEPS[:1]))
    assert skipped.stop_reason is StopReason.completed
    assert skipped.explanation == (
        "1 step of 2 ran; step 'two' skipped: gate 'check' rejected: nobody decided within 7200s"
    )
    assert skipped.ledger.calls == 1
    assert (every.explanation, single.explanation) == ("all 2 steps ran", "the one step ran")


async def test_a_spend_gate_that_timed_out_says_so(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A spend gate nobody decided stops the job saying it timed out, not that someone rejected it."""
    gate = {"name": "spend", "spend_tokens": 1, "timeout": "2h", "default": "reject"}
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, job("sequential", STEPS, gates=[gate]))
    assert result.stop_reason is StopReason.budget_exhausted
    assert result.explanation == "spend gate 'spend' at 1 token was rejected: nobody decided within 7200s"


async def test_the_result_keeps_what_status_shows_of_the_ended_job(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """The priority set while the job ran, the interrupts it received, its steps and its gates are
    in its result, so the status of the ended job (read from the result) shows them as they ended."""
    gate = {"name": "ship", "before_step": "two", "timeout": "1h"}
    spec = job("sequential", STEPS, gates=[gate])
    async with make_worker(ts_env.client, gateway) as worker:
        handle = await start_job(ts_env.client, worker.task_queue, spec)
        await until(lambda: _pending(handle))
        await handle.execute_update("set_priority", SetPriorityRequest(task="job", priority=1))
        await handle.signal("interrupt", InterruptRequest(message="later", priority=5))
        await handle.execute_update("reject", GateDecision(gate="ship", by="alice"))
        result = await handle.result()
    assert (result.priority, result.interrupts) == (1, 1)
    assert (result.steps_done, result.steps_total) == (2, 2)
    [record] = result.gates
    assert (record.outcome, record.by) == ("rejected", "alice")
    assert result.explanation == "1 step of 2 ran; step 'two' skipped: gate 'ship' rejected by alice"


async def _pending(handle: WorkflowHandle[Any, Any]) -> JobProgress | None:
    progress = await status_of(handle)
    return progress if progress.pending_gates else None


def test_results_written_before_these_fields_still_read() -> None:
    """The result a recorded history ended with, from before the result kept priority, interrupts
    and steps, reads with them unknown (None) or zero."""
    history = json.loads((ROOT / "tests" / "histories" / "sequential-v2.json").read_text())
    [completed] = [
        event["workflowExecutionCompletedEventAttributes"]
        for event in history["events"]
        if "workflowExecutionCompletedEventAttributes" in event
    ]
    data = json.loads(base64.b64decode(completed["result"]["payloads"][0]["data"]))
    assert "priority" not in data
    old = JobResult.model_validate(data)
    assert (old.priority, old.interrupts, old.steps_done, old.steps_total) == (None, 0, None, None)
