"""Secrets stay in the worker's environment: recognisable fake keys are sent on every request, yet
they appear nowhere in history, memo, search attributes, results, errors or logs."""

from __future__ import annotations

import json
import logging
import uuid
from decimal import Decimal
from typing import Any

import httpx2 as httpx
import pytest
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.catalog import CatalogEntry, ModelCatalog, resolve
from activities.config import ProviderSettings
from activities.model_call import ModelCallActivities
from contracts.jobs import JobResult, StopReason
from contracts.models import Message, ModelCallRequest, ModelPrice
from contracts.spec import parse_spec
from harness.sim import SimServer
from tests.helpers import make_worker, sim_call, start_job

PRICE = ModelPrice(input_per_mtok=Decimal("0.05"), output_per_mtok=Decimal("0.10"))
LOGGERS = ("temporalio", "harness", "activities", "openai", "anthropic", "httpx", "httpcore")


@pytest.fixture
def sent_keys(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every credential header the SDKs put on the wire during the test (proof the key is used)."""
    seen: list[str] = []
    original = httpx.AsyncClient.send

    async def send(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        for header in ("authorization", "x-api-key"):
            if header in request.headers:
                seen.append(request.headers[header])
        return await original(self, request, **kwargs)

    monkeypatch.setattr(httpx.AsyncClient, "send", send)
    return seen


async def run_with_canaries(
    env: WorkflowEnvironment,
    sim: SimServer,
    canaries: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> tuple[JobResult, str]:
    """Run an openai: then anthropic: job whose keys are the canaries; return the result and
    everything a user, operator or log reader could see."""
    settings = ProviderSettings.from_env(
        {
            "OPENAI_API_KEY": canaries["openai"],
            "OPENAI_BASE_URL": f"{sim.url}/v1",
            "ANTHROPIC_API_KEY": canaries["anthropic"],
            "ANTHROPIC_BASE_URL": sim.url,
        }
    )
    gateway = ModelCallActivities(settings)
    spec = parse_spec(
        {
            "id": f"canary-{uuid.uuid4().hex[:8]}",
            "task": "Say something.",
            "agents": [
                {"name": "a", "model": "openai:gpt-4o-mini", "max_output_tokens": 40},
                {"name": "b", "model": "anthropic:claude-haiku-4-5", "max_output_tokens": 40},
            ],
            "steps": [{"id": "one", "agent": "a"}, {"id": "two", "agent": "b"}],
        }
    )
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    try:
        async with make_worker(env.client, gateway) as worker:
            handle = await start_job(env.client, worker.task_queue, spec)
            result = await handle.result()
            history = await handle.fetch_history()
            description = await handle.describe()
    finally:
        await gateway.aclose()
    memo = await description.memo()
    visible = "\n".join(
        [
            history.to_json(),
            json.dumps(memo, default=str),
            repr(description.typed_search_attributes),
            repr(description.raw_description),
            result.model_dump_json(),
            caplog.text,
            "\n".join(repr(record.__dict__) for record in caplog.records),
        ]
    )
    assert caplog.records, "the run logged nothing: the log check would be vacuous"
    return result, visible


def canaries() -> dict[str, str]:
    return {provider: f"sk-canary-{uuid.uuid4().hex}" for provider in ("openai", "anthropic")}


async def test_key_never_leaves_the_worker(
    dev_env: WorkflowEnvironment, sim: SimServer, caplog: pytest.LogCaptureFixture, sent_keys: list[str]
) -> None:
    """A job that uses canary keys completes; each key went on the wire to the simulator, and is
    in no history event, memo, search attribute, description, result or log line."""
    keys = canaries()
    result, visible = await run_with_canaries(dev_env, sim, keys, caplog)
    assert result.stop_reason is StopReason.completed
    for key in keys.values():  # each key really went on the wire (Bearer or x-api-key, by SDK version)
        assert any(key in header for header in sent_keys)
    for key in keys.values():
        assert key not in visible
    assert "sk-canary" not in visible


async def test_key_is_not_in_provider_errors(
    dev_env: WorkflowEnvironment, sim: SimServer, caplog: pytest.LogCaptureFixture, sent_keys: list[str]
) -> None:
    """A 401 is not retried: it ends the job with stop reason failed, naming the cause, and neither
    the explanation, the failure in history nor the logs hold the key."""
    keys = canaries()
    sim_call(sim, "/_sim/faults", {"kind": "401", "count": 1})
    result, visible = await run_with_canaries(dev_env, sim, keys, caplog)
    assert result.stop_reason is StopReason.failed
    assert "AuthenticationFailed" in result.explanation
    assert "401" in visible  # the failure is visible...
    assert any(keys["openai"] in header for header in sent_keys)
    assert "sk-canary" not in visible  # ...and the key is not


async def test_each_provider_sends_only_its_own_key(sim: SimServer, sent_keys: list[str]) -> None:
    """Two providers configured at the same URL with different keys each send their own key: a
    reused connection pool never carries one provider's key to another's server."""
    settings = ProviderSettings.from_env(
        {
            "OPENAI_API_KEY": "sk-canary-openai",
            "OPENAI_BASE_URL": f"{sim.url}/v1",
            "HARNESS_OPENAI_COMPATIBLE_BASE_URL": f"{sim.url}/v1",
            "HARNESS_OPENAI_COMPATIBLE_API_KEY": "sk-canary-compatible",
        }
    )
    catalog = ModelCatalog(models={"local": CatalogEntry(model="openai-compatible:local", price=PRICE)})
    gateway = ModelCallActivities(settings, catalog)
    try:
        for ref in ("openai:gpt-4o-mini", "local"):
            request = ModelCallRequest(
                call_id=f"call-{ref}",
                job_id="job",
                agent="a",
                model=resolve(ref, catalog),
                messages=[Message(role="user", content="hi")],
                max_output_tokens=20,
            )
            await ActivityEnvironment().run(gateway.model_call, request)
    finally:
        await gateway.aclose()
    assert len(sent_keys) == 2
    assert "sk-canary-openai" in sent_keys[0] and "sk-canary-compatible" in sent_keys[1]
