"""Goal checks in a group chat, on the time-skipping server: a JSON Schema goal met by a planner's
plan, and a judge that cannot answer (scored 0, or fatal with ``on_error: fail``)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from contracts.jobs import StopReason
from contracts.spec import parse_spec
from harness.sim import SimServer
from tests.helpers import (
    PLAN_SCHEMA,
    assert_ledger_matches_sim,
    make_worker,
    run_job,
    sim_call,
    start_job,
    transcript_of,
)


async def test_planner_plan_meets_a_json_schema_goal(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A chat whose planner answers with a JSON plan ends goal_met in round one when the goal is the
    plan's schema, and runs to max_rounds when the schema asks for what the plan lacks."""

    def chat(schema: dict[str, Any]) -> Any:
        return parse_spec(
            {
                "id": f"plan-{uuid.uuid4().hex[:8]}",
                "mode": "groupchat",
                "task": "Plan a launch note. subtasks=3",
                "agents": [{"name": "planner", "model": "sim:planner", "max_output_tokens": 400}],
                "goal": {"checks": [{"kind": "json", "value": schema}]},
                "termination": {"max_rounds": 2},
            }
        )

    strict = {**PLAN_SCHEMA, "required": ["subtasks", "owner"]}
    results = []
    async with make_worker(ts_env.client, gateway) as worker:
        for spec in (chat(PLAN_SCHEMA), chat(strict)):
            results.append(await run_job(ts_env.client, worker.task_queue, spec))
    met, missed = results
    assert met.stop_reason is StopReason.goal_met and met.turns == 1
    assert json.loads(met.output)["subtasks"]
    assert missed.stop_reason is StopReason.max_rounds and missed.turns == 2


def judged_chat(on_error: str = "score_zero", rounds: int = 2) -> Any:
    """A writer judged by sim:judge whose rubric makes every judge reply invalid JSON, re-asks too."""
    return parse_spec(
        {
            "id": f"judge-bad-{uuid.uuid4().hex[:8]}",
            "mode": "groupchat",
            "task": "Write a note on durable agents.",
            "agents": [{"name": "writer", "model": "sim:writer", "max_output_tokens": 80}],
            "goal": {
                "rule": "weighted",
                "threshold": 0.6,
                "checks": [
                    {"kind": "contains", "value": "Draft"},
                    {
                        "kind": "judge",
                        "model": "sim:judge",
                        "rubric": "Clear and correct. [[sim bad_json=always]]",
                        "on_error": on_error,
                    },
                ],
            },
            "termination": {"max_rounds": rounds},
        }
    )


def judge_tally(sim: SimServer) -> dict[str, int]:
    counters: dict[str, int] = sim_call(sim, "/_sim/tally")["models"].get("judge", {})
    return counters


async def test_a_judge_that_cannot_answer_scores_zero_is_charged_exactly_and_the_job_goes_on(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """A judge whose reply stays invalid after its re-asks is an error outcome scoring 0: the chat
    runs to max_rounds (a passing judge would have met the weighted goal), the evidence and the
    explanation name the error, and every re-ask is charged as the simulator served it."""
    sim_call(sim, "/_sim/reset", {})
    spec = judged_chat()
    async with make_worker(ts_env.client, gateway) as worker:
        handle = await start_job(ts_env.client, worker.task_queue, spec)
        result = await handle.result()
        turns = await transcript_of(handle)
    assert result.stop_reason is StopReason.max_rounds, result.explanation
    assert "2 checks could not be evaluated and scored 0" in result.explanation
    errors = result.evidence["check_errors"]
    assert len(errors) == 2
    assert errors[0].startswith("judge sim:judge could not answer: StructuredOutputInvalid")
    judge = result.evidence["goal"]["outcomes"][1]
    assert judge["score"] == 0.0 and not judge["passed"] and "StructuredOutputInvalid" in judge["error"]
    assert result.evidence["goal"]["score"] == 0.5
    judged = [t for t in turns if t.agent == "judge"]
    assert [t.finish_reason for t in judged] == ["error", "error"]
    assert all(t.usage.requests == 3 and "StructuredOutputInvalid" in (t.error or "") for t in judged)
    served = judge_tally(sim)
    assert served["completed"] == 6
    assert sum(t.usage.input_tokens for t in judged) == served["input_tokens"]
    assert sum(t.usage.output_tokens for t in judged) == served["output_tokens"]
    assert_ledger_matches_sim(result, sim)
    assert not result.ledger.usage.estimated


async def test_a_judge_that_cannot_answer_ends_the_job_when_its_check_says_fail(
    ts_env: WorkflowEnvironment, gateway: ModelCallActivities, sim: SimServer
) -> None:
    """``on_error: fail`` makes an unevaluable judge fatal: the job ends failed naming it, charged exactly."""
    sim_call(sim, "/_sim/reset", {})
    async with make_worker(ts_env.client, gateway) as worker:
        result = await run_job(ts_env.client, worker.task_queue, judged_chat(on_error="fail"))
    assert result.stop_reason is StopReason.failed
    assert "judge sim:judge could not answer: StructuredOutputInvalid" in result.explanation
    assert "on_error: fail" in result.explanation
    assert result.turns == 2
    assert judge_tally(sim)["completed"] == 3
    assert_ledger_matches_sim(result, sim)
