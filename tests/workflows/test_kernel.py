"""The job kernel's shared turn: routing and cascades in every mode's steps, routed function checks."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.testing import WorkflowEnvironment

from activities.checks import CheckActivities, CheckRegistry
from activities.model_call import ModelCallActivities
from activities.routing_stats import RoutingStatsActivities
from contracts.jobs import JobResult, StopReason, TurnRecord
from contracts.spec import JobSpec, parse_spec
from harness.sim import SimServer
from tests.helpers import make_worker, sim_call

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
