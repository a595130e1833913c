"""Goal checks: the deterministic kinds (JSON Schema included), how the spec refuses bad ones, and a
group chat whose planner's JSON plan meets a schema goal on the time-skipping server."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from contracts.jobs import StopReason
from contracts.spec import SpecError, parse_spec
from policies.goals import combine, deterministic_check
from tests.helpers import make_worker, run_job

PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["subtasks"],
    "properties": {
        "subtasks": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "title", "priority"],
                "properties": {"priority": {"type": "integer", "minimum": 1, "maximum": 5}},
            },
        }
    },
}


@pytest.mark.parametrize(
    ("kind", "value", "text", "passed"),
    [
        ("contains", "approved", "APPROVED, ship it", True),
        ("not_contains", "TODO", "TODO: finish", False),
        ("regex", r"^v\d+", "v12 of the note", True),
        ("min_length", 10, "short", False),
        ("max_length", 10, "short", True),
        ("json", None, '{"a": 1}', True),
        ("json", None, "{'a': 1}", False),
    ],
)
def test_deterministic_checks(kind: str, value: Any, text: str, passed: bool) -> None:
    """Each deterministic kind passes or fails as its name says, scoring 1 or 0."""
    outcome = deterministic_check(kind, value, text, weight=2.0)
    assert (outcome.passed, outcome.score, outcome.weight) == (passed, float(passed), 2.0)


def test_json_schema_check_names_where_the_output_fails() -> None:
    """A json check with a schema passes a matching document and names the path and rule of a miss."""
    good = {"subtasks": [{"id": "t1", "title": "Intro", "priority": 2}]}
    assert deterministic_check("json", PLAN_SCHEMA, json.dumps(good)).passed
    bad = {"subtasks": [{"id": "t1", "title": "Intro", "priority": 9}]}
    outcome = deterministic_check("json", PLAN_SCHEMA, json.dumps(bad))
    assert not outcome.passed and outcome.score == 0.0
    assert "subtasks/0/priority" in outcome.detail and "9 is greater than the maximum of 5" in outcome.detail
    assert "invalid JSON" in deterministic_check("json", PLAN_SCHEMA, "not json").detail


def test_schema_draft_is_taken_from_the_schema() -> None:
    """``$schema`` picks the draft: draft 4's boolean exclusiveMaximum is honoured."""
    draft4 = {"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 5, "exclusiveMaximum": True}
    assert not deterministic_check("json", draft4, "5").passed
    assert deterministic_check("json", draft4, "4").passed


def test_spec_refuses_bad_schemas_naming_the_field() -> None:
    """An invalid schema, a schema on a non-json check, or a non-mapping json value fail at load."""

    def spec(check: dict[str, Any]) -> None:
        parse_spec(
            {
                "mode": "groupchat",
                "task": "t",
                "agents": [{"name": "a", "model": "sim:planner"}],
                "goal": {"checks": [check]},
            }
        )

    with pytest.raises(SpecError, match=r"goal\.checks\.0.*not a valid JSON Schema.*minItems"):
        spec({"kind": "json", "value": {"type": "array", "minItems": -1}})
    with pytest.raises(SpecError, match="takes no schema"):
        spec({"kind": "judge", "model": "sim:judge", "value": {"type": "object"}})
    with pytest.raises(SpecError, match="needs a string"):
        spec({"kind": "contains", "value": {"type": "object"}})
    with pytest.raises(SpecError, match="is a JSON Schema"):
        spec({"kind": "json", "value": "object"})
    spec({"kind": "json", "value": PLAN_SCHEMA})  # a valid one loads


def test_rules_combine_scores() -> None:
    """'all' needs every check; 'weighted' needs the weighted mean to reach the threshold."""
    outcomes = [
        deterministic_check("contains", "a", "a", weight=3.0),
        deterministic_check("contains", "z", "a", weight=1.0),
    ]
    assert not combine(outcomes, "all", 0.5).met
    verdict = combine(outcomes, "weighted", 0.75)
    assert verdict.met and verdict.score == 0.75


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
