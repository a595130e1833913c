"""The job kernel's shared turn: routing and cascades in every mode's steps, routed function checks,
failed calls charged what they spent, and worker-side errors ending the job ``failed``."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.checks import CheckActivities, CheckRegistry
from activities.model_call import ModelCallActivities
from activities.routing_stats import RoutingStatsActivities
from contracts import search_attributes as sa
from contracts.jobs import JobResult, JobStatus, StopReason, TurnRecord
from contracts.models import ModelCallRequest
from contracts.names import MODEL_CALL_ACTIVITY
from contracts.spec import JobSpec, parse_spec
from harness.sim import SimServer
from policies.tokens import count_tokens, input_overhead
from tests.helpers import make_worker, sim_call, start_job, status_of, transcript_of

MEDIUM_PASSES = "Solve puzzle 3: difficulty=0.7."  # tier-small FAIL, tier-medium PASS, tier-large PASS
TIERS = ["sim:tier-small", "sim:tier-medium", "sim:tier-large"]


async def run_job(
    env: WorkflowEnvironment,
    gateway: ModelCallActivities,
    workflow: str,
    spec: JobSpec,
    registry: CheckRegistry | None = None,
) -> tuple[JobResult, list[TurnRecord]]:
    """Run ``spec`` as ``workflow`` on a worker with the model, stats and check activities."""
    stats = RoutingStatsActivities(env.client, workflow_id=f"stats-{uuid.uuid4().hex[:8]}")
    checks = CheckActivities(registry)
    activities = [gateway.model_call, gateway.resolve_models, stats.routing_stats, checks.run_check]
    async with make_worker(env.client, gateway, activities=activities) as worker:
        handle = await env.client.start_workflow(
            workflow, spec, id=spec.id or "", task_queue=worker.task_queue, result_type=JobResult
        )
        result = await handle.result()
        return result, await handle.query("transcript", result_type=list[TurnRecord])


def called(turns: list[TurnRecord]) -> list[str]:
    """The models of the routed calls, in order."""
    return [t.model for t in turns if t.routing and t.routing["role"] == "call"]


async def test_a_routed_function_check_runs_and_drives_the_cascade(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """A cascade whose check is a registered function escalates on its verdict (it used to be retried
    without end: the check activity was sent two arguments)."""
    registry = CheckRegistry()
    registry.register("says_pass")(lambda text: "PASS" in text)
    cascade = {"models": TIERS, "checks": [{"kind": "function", "value": "says_pass"}], "learn": False}
    spec = parse_spec(
        {
            "id": f"fn-check-{uuid.uuid4().hex[:8]}",
            "task": MEDIUM_PASSES,
            "agents": [{"name": "solver", "model": "sim:tier-small", "max_output_tokens": 100}],
            "steps": [{"id": "solve", "agent": "solver", "prompt": "{task}", "cascade": cascade}],
        }
    )
    result, turns = await run_job(ts_env, gateway, "SequentialJob", spec, registry)
    assert result.stop_reason is StopReason.completed
    assert called(turns) == TIERS[:2]
    [record] = result.routing
    assert [a.passed for a in record.attempts] == [False, True]
    assert record.outcome == "passed"
    assert result.output.startswith("PASS")


async def test_dag_steps_are_routed_and_cascaded(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """A DAG step with a cascade climbs on failed checks like a sequential step; plain steps beside it
    run as before, and the job's result carries the step's routing record."""
    sim_call(sim, "/_sim/reset", {})
    cascade: dict[str, Any] = {
        "models": TIERS,
        "checks": [{"kind": "contains", "value": "PASS"}],
        "learn": False,
    }
    spec = parse_spec(
        {
            "id": f"dag-route-{uuid.uuid4().hex[:8]}",
            "mode": "dag",
            "task": MEDIUM_PASSES,
            "agents": [
                {"name": "solver", "model": "sim:tier-small", "max_output_tokens": 100},
                {"name": "echo", "model": "sim:echo", "max_output_tokens": 50},
            ],
            "steps": [
                {"id": "solve", "agent": "solver", "prompt": "{task}", "cascade": cascade},
                {"id": "side", "agent": "echo", "prompt": "note: {task}"},
                {"id": "sum", "agent": "echo", "prompt": "sum: {solve}", "depends_on": ["solve", "side"]},
            ],
        }
    )
    result, turns = await run_job(ts_env, gateway, "DagJob", spec)
    assert result.stop_reason is StopReason.completed
    assert called(turns) == TIERS[:2]
    assert [r.step for r in result.routing] == ["solve"]
    assert result.routing[0].outcome == "passed"
    assert result.outputs["solve"].startswith("PASS")
    assert [t.step for t in turns if not t.routing] == ["side", "sum"]
    tally = sim_call(sim, "/_sim/tally")["total"]
    assert result.ledger.calls == tally["completed"] == 4


async def test_a_function_check_that_raises_counts_as_failed_and_the_cascade_climbs(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A registered check that raises cannot be evaluated: it scores 0 (a failed check), so the
    cascade escalates instead of the job ending, and the explanation and evidence name the error."""

    def explodes_on_fail(text: str) -> bool:
        if "FAIL" in text:
            raise ValueError("cannot read this one")
        return "PASS" in text

    registry = CheckRegistry()
    registry.register("fragile")(explodes_on_fail)
    cascade = {"models": TIERS, "checks": [{"kind": "function", "value": "fragile"}], "learn": False}
    spec = parse_spec(
        {
            "id": f"fn-raises-{uuid.uuid4().hex[:8]}",
            "task": MEDIUM_PASSES,
            "agents": [{"name": "solver", "model": "sim:tier-small", "max_output_tokens": 100}],
            "steps": [{"id": "solve", "agent": "solver", "prompt": "{task}", "cascade": cascade}],
        }
    )
    result, turns = await run_job(ts_env, gateway, "SequentialJob", spec, registry)
    assert result.stop_reason is StopReason.completed, result.explanation
    assert called(turns) == TIERS[:2]
    [record] = result.routing
    assert [a.passed for a in record.attempts] == [False, True]
    assert "function=error(0.00)" in (record.attempts[0].check or "")
    assert "a check could not be evaluated and scored 0" in result.explanation
    [error] = result.evidence["check_errors"]
    assert "'fragile'" in error and "CheckRaised" in error and "ValueError: cannot read this one" in error


async def test_a_planner_still_invalid_after_its_re_asks_is_charged_what_was_served(
    ts_env: WorkflowEnvironment,
    gateway: ModelCallActivities,
    sim: SimServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A structured call that ends StructuredOutputInvalid charges all its attempts, exactly as the
    simulator served them (not the reservation), and the transcript shows the failed call. The
    worker logs the handled failure in one line of its own, not the SDK's traceback."""
    sim_call(sim, "/_sim/reset", {})
    spec = parse_spec(
        {
            "id": f"plan-bad-{uuid.uuid4().hex[:8]}",
            "mode": "delegation",
            "task": "Write a guide to durable agents. [[sim bad_json=always]]",
            "agents": [
                {"name": "lead", "model": "sim:planner", "max_output_tokens": 600},
                {"name": "writer", "model": "sim:writer", "max_output_tokens": 120},
            ],
            "delegation": {"primary": "lead"},
        }
    )
    result, turns = await run_job(ts_env, gateway, "DelegationJob", spec)
    assert result.stop_reason is StopReason.failed
    assert "lead's call to sim:planner failed: StructuredOutputInvalid" in result.explanation
    [plan] = turns
    assert plan.step == "plan-r1" and plan.finish_reason == "error"
    invalid = "StructuredOutputInvalid: reply is not a valid plan after 3 attempts"
    assert (plan.error or "").startswith(invalid)
    tally = sim_call(sim, "/_sim/tally")["total"]
    assert plan.usage.requests == result.ledger.calls == tally["completed"] == 3
    assert plan.usage.input_tokens == result.ledger.usage.input_tokens == tally["input_tokens"]
    assert plan.usage.output_tokens == result.ledger.usage.output_tokens == tally["output_tokens"]
    assert not result.ledger.usage.estimated
    assert result.ledger.cost_usd == plan.cost_usd and plan.cost_usd
    assert_handled_in_one_line(caplog, "model call failed: StructuredOutputInvalid (sim:planner for lead")


def assert_handled_in_one_line(caplog: pytest.LogCaptureFixture, line: str) -> None:
    """The worker logged ``line`` (one line, no traceback) and no 'Completing activity as failed'
    warning with a traceback."""
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(r.getMessage().startswith(line) and r.exc_info is None for r in warnings), [
        r.getMessage() for r in warnings
    ]
    assert not [r for r in warnings if "Completing activity as failed" in r.getMessage()]


async def test_an_unknown_model_is_logged_in_one_line(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, caplog: pytest.LogCaptureFixture
) -> None:
    """A model the worker's catalog does not know ends the job failed, with no output, and the
    worker logs one line naming it, not a traceback."""
    spec = parse_spec(
        {
            "id": f"unknown-{uuid.uuid4().hex[:8]}",
            "task": "Write a note.",
            "agents": [{"name": "writer", "model": "nowhere:model-x"}],
            "steps": [{"id": "s", "agent": "writer", "prompt": "{task}"}],
        }
    )
    result, _ = await run_job(ts_env, gateway, "SequentialJob", spec)
    assert result.stop_reason is StopReason.failed and "UnknownModel" in result.explanation
    assert result.output == ""
    assert_handled_in_one_line(caplog, "model 'nowhere:model-x' refused: UnknownModel")


UNPRICED = "openai-compatible:llama3"  # no catalog entry on the worker: no price
ONE_STEP = [{"id": "s", "agent": "a", "prompt": "{task}"}]
UNPRICED_SPECS: dict[str, dict[str, Any]] = {
    "sequential": {"steps": ONE_STEP},
    "dag": {"steps": ONE_STEP},
    "groupchat": {"termination": {"max_rounds": 1}},
    "delegation": {"delegation": {"primary": "a"}},
    "team": {"team": {"tasks": ["one"]}},
}


@pytest.mark.parametrize("mode", sorted(UNPRICED_SPECS))
async def test_a_worker_without_the_price_of_a_model_ends_the_job_failed(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, mode: str
) -> None:
    """In every mode a model the worker cannot price ends the job through conclude: stop reason
    failed naming UnknownPrice, status finished, search attributes set (the workflow completes)."""
    spec = parse_spec(
        {
            "id": f"unpriced-{mode}-{uuid.uuid4().hex[:6]}",
            "mode": mode,
            "task": "Say hello.",
            "agents": [{"name": "a", "model": UNPRICED, "max_output_tokens": 50}],
            **UNPRICED_SPECS[mode],
        }
    )
    async with make_worker(dev_env.client, gateway) as worker:
        handle = await start_job(dev_env.client, worker.task_queue, spec)
        result = await handle.result()
        progress = await status_of(handle)
        described = await handle.describe()
    assert result.stop_reason is StopReason.failed
    assert "UnknownPrice" in result.explanation and UNPRICED in result.explanation
    assert result.turns == 0 and result.ledger.calls == 0
    assert progress.status is JobStatus.finished and progress.stop_reason is StopReason.failed
    attributes = described.typed_search_attributes
    assert attributes.get(sa.STOP_REASON) == "failed"
    assert attributes.get(sa.STATUS) == "finished"


async def scheduled_model_calls(handle: Any) -> list[ModelCallRequest]:
    """The inputs of the job's model-call activities, from its history, in order."""
    requests = []
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == MODEL_CALL_ACTIVITY:
                [request] = pydantic_data_converter.payload_converter.from_payloads(
                    attrs.input.payloads, [ModelCallRequest]
                )
                requests.append(request)
    return requests


async def test_later_calls_carry_the_ratio_calibrated_from_settled_ones(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """The first call of a model goes out uncalibrated; once its usage is reported, the job's next
    call of that model carries the scale its reported tokens over our count of its text showed."""
    spec = parse_spec(
        {
            "id": f"calibrate-{uuid.uuid4().hex[:8]}",
            "task": "Describe the tides. [[sim latency=0 tps=0 tokens=300]]",
            "agents": [{"name": "writer", "model": "sim:writer", "max_output_tokens": 400}],
            "steps": [
                {"id": "one", "agent": "writer", "prompt": "{task}"},
                {"id": "two", "agent": "writer", "prompt": "Again: {task}"},
            ],
        }
    )
    async with make_worker(ts_env.client, gateway) as worker:
        handle = await start_job(ts_env.client, worker.task_queue, spec)
        result = await handle.result()
        first, second = await scheduled_model_calls(handle)
        turns = await transcript_of(handle)
    assert result.stop_reason is StopReason.completed
    assert first.token_scale is None
    # The first call's evidence: our count of what it sent and received against its reported tokens.
    usage = turns[0].usage
    assert not usage.estimated and usage.output_tokens == 300
    texts = [first.system, *(m.content for m in first.messages), turns[0].text]
    counted = sum(count_tokens(text) for text in texts)
    tokens = usage.input_tokens - input_overhead(len(first.messages)) + usage.output_tokens
    assert second.token_scale == pytest.approx(tokens / counted)
    assert second.token_scale < 1  # the conservative count is above what the simulator counts


async def test_search_attributes_are_upserted_when_filters_change_and_every_ten_turns(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A 25-turn chain upserts its search attributes at start, every 10 turns and at the end, not
    on every turn; the final values are the job's whole spend."""
    spec = parse_spec(
        {
            "id": f"sa-{uuid.uuid4().hex[:6]}",
            "mode": "sequential",
            "task": "Count.",
            "agents": [{"name": "a", "model": "sim:echo", "max_output_tokens": 20}],
            "steps": [{"id": f"s{i}", "agent": "a", "prompt": f"Say {i}."} for i in range(25)],
        }
    )
    async with make_worker(ts_env.client, gateway) as worker:
        handle = await start_job(ts_env.client, worker.task_queue, spec)
        result = await handle.result()
        described = await handle.describe()
        upserts = [
            event
            async for event in handle.fetch_history_events()
            if event.HasField("upsert_workflow_search_attributes_event_attributes")
        ]
    assert result.stop_reason is StopReason.completed and result.turns == 25
    # running at start, turns 10 and 20, finished: 4 (it was 27, one per turn and two more)
    ours = [
        event
        for event in upserts
        if "HarnessStatus"
        in event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields
    ]
    # running at start, turns 10 and 20, finished: 4 (it was 27, one per turn and two more); the
    # SDK adds its own for each patch marker (TemporalChangeVersion), and nothing else
    sdk = [
        set(event.upsert_workflow_search_attributes_event_attributes.search_attributes.indexed_fields)
        for event in upserts
        if event not in ours
    ]
    assert len(ours) == 4 and sdk and all(fields == {"TemporalChangeVersion"} for fields in sdk)
    attributes = described.typed_search_attributes
    assert attributes.get(sa.TOKENS) == result.ledger.usage.total_tokens
    assert attributes.get(sa.STATUS) == "finished"
