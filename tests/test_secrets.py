"""Secrets stay in the worker's environment: a recognisable fake key is used on every request, yet
it appears nowhere in history, memo, search attributes, results, errors or logs."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from harness.config import ProviderSettings
from harness.contracts import JobResult, StopReason
from harness.sim import SimServer
from harness.spec import parse_spec
from tests.conftest import make_worker, sim_call


async def run_with_canary(
    env: WorkflowEnvironment, sim: SimServer, canary: str, caplog: pytest.LogCaptureFixture
) -> tuple[JobResult, str]:
    """Run a two-step openai: job whose key is ``canary``; return the result and everything visible."""
    settings = ProviderSettings.from_env({"OPENAI_API_KEY": canary, "OPENAI_BASE_URL": f"{sim.url}/v1"})
    assert settings.endpoint("openai").api_key.get_secret_value() == canary  # the key is really used
    gateway = ModelCallActivities(settings)
    spec = parse_spec(
        {
            "id": f"canary-{uuid.uuid4().hex[:8]}",
            "task": "Say something.",
            "agents": [{"name": "a", "model": "openai:gpt-4o-mini", "max_output_tokens": 40}],
            "steps": [{"id": "one", "agent": "a"}, {"id": "two", "agent": "a"}],
        }
    )
    with caplog.at_level(logging.DEBUG):
        async with make_worker(env.client, gateway) as worker:
            handle = await env.client.start_workflow(
                "SequentialJob", spec, id=spec.id or "", task_queue=worker.task_queue, result_type=JobResult
            )
            result = await handle.result()
            history = await handle.fetch_history()
            description = await handle.describe()
    memo = await description.memo()
    visible = "\n".join(
        [
            history.to_json(),
            json.dumps(memo, default=str),
            repr(description.typed_search_attributes),
            result.model_dump_json(),
            caplog.text,
        ]
    )
    assert caplog.records, "the run logged nothing: the log check would be vacuous"
    return result, visible


async def test_key_never_leaves_the_worker(
    dev_env: WorkflowEnvironment, sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A job that uses a canary key completes; the canary is in no history event, memo, search
    attribute, result or log line."""
    canary = f"sk-canary-{uuid.uuid4().hex}"
    result, visible = await run_with_canary(dev_env, sim, canary, caplog)
    assert result.stop_reason is StopReason.completed
    assert canary not in visible
    assert "sk-canary" not in visible


async def test_key_is_not_in_provider_errors(
    dev_env: WorkflowEnvironment, sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 ends the job with stop reason failed, and neither the explanation nor anything else
    visible holds the key."""
    canary = f"sk-canary-{uuid.uuid4().hex}"
    sim_call(sim, "/_sim/faults", {"kind": "401", "count": 1})
    result, visible = await run_with_canary(dev_env, sim, canary, caplog)
    assert result.stop_reason is StopReason.failed
    assert "AuthenticationFailed" in result.explanation
    assert "sk-canary" not in visible
