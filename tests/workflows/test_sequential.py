"""The sequential chain, through the real activity and SDKs, against the simulator over HTTP."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from contracts.jobs import StopReason
from contracts.spec import JobSpec, parse_spec
from harness.sim import SimServer
from tests.helpers import ROOT, make_worker, run_job, sim_call, transcript_of
from workflows._job import PREVIEW_CHARS

EXAMPLE = ROOT / "examples" / "sequential.yaml"


def chain_spec(**overrides: Any) -> JobSpec:
    """A three-step writer/editor chain on the simulator."""
    data: dict[str, Any] = {
        "id": f"seq-{uuid.uuid4().hex[:8]}",
        "mode": "sequential",
        "task": "Write a note about durable agent scheduling.",
        "agents": [
            {"name": "writer", "model": "sim:writer", "max_output_tokens": 200},
            {"name": "editor", "model": "sim:editor", "max_output_tokens": 100},
        ],
        "steps": [
            {"id": "draft", "agent": "writer", "prompt": "{task}"},
            {"id": "review", "agent": "editor", "prompt": "Review:\n{draft}"},
            {"id": "revise", "agent": "writer", "prompt": "{draft}\nNotes: {review}\nRevise."},
        ],
    }
    data.update(overrides)
    return parse_spec(data)


def sim_tally(sim: SimServer) -> dict[str, Any]:
    """The simulator's own count of what it served."""
    return dict(sim_call(sim, "/_sim/tally"))


async def test_chain_runs_in_order_and_ledger_matches_simulator(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """Each step's output feeds the next, and the ledger equals the simulator's tally to the token."""
    sim_call(sim, "/_sim/reset", {})
    spec = chain_spec()
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
        transcript = await transcript_of(ts_env.client.get_workflow_handle(spec.id or ""))
    assert result.stop_reason is StopReason.completed
    assert list(result.outputs) == ["draft", "review", "revise"]
    assert result.outputs["draft"].startswith("Draft v1")
    assert result.output == result.outputs["revise"]
    assert [turn.step for turn in transcript] == ["draft", "review", "revise"]
    # The review prompt is "Review:\n{draft}", kept in the transcript up to PREVIEW_CHARS characters.
    assert transcript[1].prompt_preview == f"Review:\n{result.outputs['draft']}"[:PREVIEW_CHARS]
    tally = sim_tally(sim)["total"]
    assert result.ledger.calls == 3 == tally["completed"]
    assert result.ledger.usage.input_tokens == tally["input_tokens"]
    assert result.ledger.usage.output_tokens == tally["output_tokens"]
    assert result.ledger.cost_usd > Decimal(0)
    assert not result.ledger.usage.estimated


async def test_budget_stops_before_a_call_that_might_not_fit(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A call whose worst case exceeds the remaining tokens is never started; the best output is kept."""
    spec = chain_spec(budget={"tokens": 420})
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
    assert result.stop_reason is StopReason.budget_exhausted
    assert result.ledger.usage.total_tokens <= 420
    assert 0 < len(result.outputs) < len(spec.steps)
    assert result.output == list(result.outputs.values())[-1]
    assert "tokens" in result.explanation


async def test_example_spec_is_valid_and_runs(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """The shipped example loads and completes with every step run."""
    from harness.specfile import load_spec

    spec = load_spec(EXAMPLE).model_copy(update={"id": f"example-{uuid.uuid4().hex[:8]}"})
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
    assert result.stop_reason is StopReason.completed
    assert len(result.outputs) == len(spec.steps)
    assert result.ledger.limit_tokens == 20000


def test_history_fixture_is_json() -> None:
    """The recorded history used by the replay test is present and parseable."""
    data = json.loads((ROOT / "tests" / "histories" / "sequential.json").read_text())
    assert data["events"]


async def test_non_retryable_provider_error_ends_the_job_with_failed(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """A 400 from the provider is not retried: the job ends with stop reason failed, naming the cause,
    with no output (the draft is no answer) and the outputs of the steps that finished."""
    sim_call(sim, "/_sim/faults", {"kind": "400", "model": "editor", "count": 1})
    spec = chain_spec()
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
    assert result.stop_reason is StopReason.failed
    assert "BadRequest" in result.explanation and "editor" in result.explanation
    assert list(result.outputs) == ["draft"] and result.outputs["draft"]
    assert result.output == ""


async def test_a_request_over_the_context_window_is_refused_before_it_is_sent(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """A task of about 150k tokens for a model with a 128k window is not sent (nothing is served or
    paid): the job ends failed, naming the sizes."""
    sim_call(sim, "/_sim/reset", {})
    spec = chain_spec(task="durable " * 100_000)  # 800,000 characters, 2 tokens a word
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
    assert result.stop_reason is StopReason.failed, result.explanation
    assert "context window of 128000" in result.explanation and "writer" in result.explanation
    assert result.turns == 0 and result.ledger.calls == 0
    assert result.output == "" and result.outputs == {}  # never the task taken for an answer
    assert sim_tally(sim)["total"]["completed"] == 0


async def test_a_job_stopped_before_any_step_ran_has_no_output(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A budget the first call cannot fit stops the job before any step ran: its output is empty,
    not the task."""
    spec = chain_spec(budget={"tokens": 50})
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, spec)
    assert result.stop_reason is StopReason.budget_exhausted, result.explanation
    assert result.turns == 0 and result.output == ""
