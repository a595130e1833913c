"""Routed steps end to end: cascades and routes on the simulator's tier models, charged and learned.

The simulator's ``tier-small`` / ``tier-medium`` / ``tier-large`` answer "PASS" or "FAIL" by a
deterministic draw from the prompt and the model (see ``harness.sim._scenarios``), so each prompt
below fixes which tiers pass; the comment next to it says which.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from activities.routing_stats import RoutingStatsActivities
from contracts.jobs import JobResult, StopReason, TurnRecord
from contracts.routing import RoutingStatsState
from contracts.spec import JobSpec, SpecError, parse_spec
from harness.cli_routing import stats_table
from harness.sim import SimServer
from tests.helpers import ROOT, assert_ledger_matches_sim, make_worker, sim_call, start_job, transcript_of

# (small, medium, large) outcomes of each prompt, read off the simulator's draws.
SMALL_PASSES = "Solve puzzle 5: difficulty=0.7."  # PASS, PASS, PASS
MEDIUM_PASSES = "Solve puzzle 3: difficulty=0.7."  # FAIL, PASS, PASS
LARGE_PASSES = "Solve puzzle 1: difficulty=0.7."  # FAIL, FAIL, PASS
NONE_PASS = "Solve puzzle 44: difficulty=0.7."  # FAIL, FAIL, FAIL
EXAMPLE = ROOT / "examples" / "cascade.yaml"
TIERS = ["sim:tier-small", "sim:tier-medium", "sim:tier-large"]
PASS_CHECK = {"kind": "contains", "value": "PASS"}


def routed_spec(task: str, step: dict[str, Any], **overrides: Any) -> JobSpec:
    """A one-step sequential job whose step is routed as ``step`` says."""
    data: dict[str, Any] = {
        "id": f"route-{uuid.uuid4().hex[:8]}",
        "task": task,
        "agents": [{"name": "solver", "model": "sim:tier-small", "max_output_tokens": 100}],
        "steps": [{"id": "solve", "agent": "solver", "prompt": "{task}", **step}],
    }
    data.update(overrides)
    return parse_spec(data)


def stats_activities(client: Client) -> RoutingStatsActivities:
    """The routing-stats activity on a stats workflow of this test's own."""
    return RoutingStatsActivities(client, workflow_id=f"stats-{uuid.uuid4().hex[:8]}")


async def run(
    env: WorkflowEnvironment,
    gateway: ModelCallActivities,
    stats: RoutingStatsActivities,
    *specs: JobSpec,
    then: Callable[[], Awaitable[None]] | None = None,
) -> list[tuple[JobResult, list[TurnRecord]]]:
    """Run ``specs`` one after another on one worker, then ``then`` while it still runs."""
    out = []
    activities = [gateway.model_call, gateway.resolve_models, stats.routing_stats]
    async with make_worker(env.client, gateway, activities=activities) as worker:
        for spec in specs:
            handle = await start_job(env.client, worker.task_queue, spec)
            result = await handle.result()
            out.append((result, await transcript_of(handle)))
        if then is not None:
            await then()
    return out


def called(turns: list[TurnRecord]) -> list[str]:
    """The models of the routed calls, in order (checks left out)."""
    return [t.model for t in turns if t.routing and t.routing["role"] == "call"]


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (SMALL_PASSES, TIERS[:1]),
        (MEDIUM_PASSES, TIERS[:2]),
        (LARGE_PASSES, TIERS),
        (NONE_PASS, TIERS),
    ],
    ids=["small-passes", "medium-passes", "large-passes", "none-pass"],
)
async def test_cascade_escalates_exactly_when_checks_fail(
    ts_env: WorkflowEnvironment,
    gateway: ModelCallActivities,
    sim: SimServer,
    task: str,
    expected: list[str],
) -> None:
    """A cascade climbs one tier per failed check, stops at the first pass or the top, and is charged."""
    sim_call(sim, "/_sim/reset", {})
    spec = routed_spec(task, {"cascade": {"models": TIERS, "checks": [PASS_CHECK], "learn": False}})
    [(result, turns)] = await run(ts_env, gateway, stats_activities(ts_env.client), spec)
    assert called(turns) == expected
    [record] = result.routing
    assert [a.model for a in record.attempts] == expected
    passed = [a.passed for a in record.attempts]
    assert passed[:-1] == [False] * (len(expected) - 1)
    assert passed[-1] is (task != NONE_PASS)
    assert record.outcome == ("failed" if task == NONE_PASS else "passed")
    escalated = [e for e in record.decision["escalations"] if e["to_model"] is not None]
    assert [e["to_model"] for e in escalated] == expected[1:]
    assert result.output.startswith("PASS" if task != NONE_PASS else "FAIL")
    assert "cascade general" in record.summary
    assert_ledger_matches_sim(result, sim)


async def test_judge_checks_are_charged_and_recorded(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """A judge check is a charged turn of its own, recorded as the check of the call it judged."""
    sim_call(sim, "/_sim/reset", {})
    judge = {"kind": "judge", "model": "sim:judge", "rubric": "Did the solver solve it?"}
    cascade = {"models": TIERS, "checks": [judge], "threshold": 0.5, "check_final": True, "learn": False}
    spec = routed_spec(LARGE_PASSES, {"cascade": cascade})
    [(result, turns)] = await run(ts_env, gateway, stats_activities(ts_env.client), spec)
    [record] = result.routing
    checks = [t for t in turns if t.routing and t.routing["role"] == "check"]
    assert [t.routing["for_call"] for t in checks if t.routing] == [a.call_id for a in record.attempts]
    assert all(t.agent == "judge" and t.model == "sim:judge" for t in checks)
    assert all(a.check_cost_usd > 0 for a in record.attempts)
    assert [a.passed for a in record.attempts][:-1] == [False] * (len(record.attempts) - 1)
    assert result.ledger.per_agent_cost_usd["judge"] == sum(a.check_cost_usd for a in record.attempts)
    assert_ledger_matches_sim(result, sim)


@pytest.mark.parametrize(
    ("usd", "expected"),
    [("0.0012", TIERS[:2]), ("0.0021", TIERS)],
    ids=["too-low-for-large", "room-after-real-spend"],
)
async def test_budget_decides_whether_the_cascade_may_climb(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer, usd: str, expected: list[str]
) -> None:
    """The next tier is called only if its worst case fits what is really left of the budget."""
    sim_call(sim, "/_sim/reset", {})
    cascade = {"models": TIERS, "checks": [PASS_CHECK], "learn": False}
    spec = routed_spec(NONE_PASS, {"cascade": cascade}, budget={"usd": usd})
    [(result, turns)] = await run(ts_env, gateway, stats_activities(ts_env.client), spec)
    [record] = result.routing
    assert called(turns) == expected
    # The start-time plan could not afford the top tier's worst case after the other two.
    assert record.decision["candidates"][-1]["name"] == "sim:tier-large"
    assert result.ledger.cost_usd <= Decimal(usd)
    last = record.decision["escalations"][-1]
    assert last["to_model"] is None
    if expected == TIERS:
        assert "top of the plan" in last["reason"]
    else:
        assert "cannot pay sim:tier-large" in last["reason"]
    assert result.stop_reason is StopReason.completed
    assert_ledger_matches_sim(result, sim)


async def test_stats_learned_in_one_job_change_the_next_jobs_choice(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A failed check recorded by one job lowers that model's estimate, so the next job routes higher."""
    # The real dev server: the time-skipping one times out a workflow that waits for ever.
    stats = stats_activities(dev_env.client)
    step = {
        "precision": "standard",
        "task_kind": "puzzle",
        "route": {"candidates": TIERS, "checks": [PASS_CHECK]},
    }
    first, second = routed_spec(LARGE_PASSES, step), routed_spec(LARGE_PASSES, step)
    handle = dev_env.client.get_workflow_handle(stats.workflow_id)
    states: list[RoutingStatsState] = []

    async def read_stats() -> None:
        states.append(await handle.query("stats", result_type=RoutingStatsState))
        await handle.terminate("test over")

    (r1, _), (r2, _) = await run(dev_env, gateway, stats, first, second, then=read_stats)
    # On priors alone tier-medium (0.80) is the cheapest model meeting 'standard'; it fails here.
    assert r1.routing[0].decision["choice"] == "sim:tier-medium"
    assert r1.routing[0].outcome == "failed"
    assert r2.routing[0].decision["choice"] == "sim:tier-large"
    assert r2.routing[0].outcome == "passed"
    [state] = states
    counts = state.stats.counts["puzzle"]
    assert (counts["sim:tier-medium"].passes, counts["sim:tier-medium"].failures) == (0, 1)
    assert (counts["sim:tier-large"].passes, counts["sim:tier-large"].failures) == (1, 0)
    assert state.batches == 2
    assert stats_table(state).row_count == 2


async def test_a_retried_batch_is_counted_once(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """The stats workflow ignores a batch whose key it has already counted."""
    from contracts.routing import RoutingOutcome, RoutingOutcomes
    from policies.routing import RoutingStats

    stats = stats_activities(dev_env.client)
    batch = RoutingOutcomes(key="job/step/1", outcomes=[RoutingOutcome(kind="k", model="m", passed=True)])
    async with make_worker(dev_env.client, gateway, activities=[stats.routing_stats]) as worker:
        from activities.routing_stats import ensure_stats_workflow

        await ensure_stats_workflow(dev_env.client, stats.workflow_id, worker.task_queue)
        handle = dev_env.client.get_workflow_handle(stats.workflow_id)
        for _ in range(2):
            after = await handle.execute_update("record", batch, result_type=RoutingStats)
        assert after.counts["k"]["m"].passes == 1
        await handle.terminate("test over")


def test_routed_models_are_resolved_at_start_and_bad_settings_refused() -> None:
    """Candidates and judges of routed steps are in the job's models; a cascade without a check is refused."""
    spec = routed_spec(
        "t", {"route": {"candidates": TIERS, "checks": [{"kind": "judge", "model": "sim:judge"}]}}
    )
    assert set(spec.model_refs()) == {*TIERS, "sim:judge"}
    with pytest.raises(SpecError, match="a cascade needs a check"):
        routed_spec("t", {"cascade": {"models": TIERS}})
    with pytest.raises(SpecError, match="not both"):
        routed_spec(
            "t", {"route": {"candidates": TIERS}, "cascade": {"models": TIERS, "checks": [PASS_CHECK]}}
        )
    with pytest.raises(SpecError, match="precision"):
        routed_spec("t", {"precision": "perfect", "route": {"candidates": TIERS}})


async def test_example_cascade_runs(ts_env: WorkflowEnvironment, gateway: ModelCallActivities) -> None:
    """The shipped cascade example completes with a routing record for its cascaded step."""
    from harness.specfile import load_spec

    spec = load_spec(EXAMPLE)
    spec = spec.model_copy(update={"id": f"cascade-{uuid.uuid4().hex[:8]}"})
    stats = stats_activities(ts_env.client)
    [(result, _)] = await run(ts_env, gateway, stats, spec)
    assert result.stop_reason is StopReason.completed
    assert result.routing and result.routing[0].attempts
