"""A group chat whose planner's JSON plan meets a JSON Schema goal, on the time-skipping server."""

from __future__ import annotations

import json
import uuid
from typing import Any

from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from contracts.jobs import StopReason
from contracts.spec import parse_spec
from tests.helpers import PLAN_SCHEMA, make_worker, run_job


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
