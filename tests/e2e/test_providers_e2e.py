"""One job across OpenAI, Anthropic and an OpenAI-compatible server, all served by the simulator
through the real SDKs: the ledger matches the simulator's tally to the token, at catalog prices."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.catalog import load_catalog, resolve
from activities.config import ProviderSettings
from activities.model_call import ModelCallActivities
from contracts.jobs import JobResult, StopReason
from contracts.models import Usage
from contracts.spec import JobSpec, parse_spec
from harness.sim import SimServer
from harness.specfile import load_spec
from tests.helpers import ROOT, harness, make_worker, run_job, sim_call, start_job, transcript_of
from worker import build_worker

CATALOG = ROOT / "examples" / "catalog.yaml"


def three_provider_spec(prefix: str) -> JobSpec:
    """examples/providers.yaml under a fresh job id."""
    return load_spec(ROOT / "examples" / "providers.yaml").model_copy(
        update={"id": f"{prefix}-{uuid.uuid4().hex[:8]}"}
    )


async def run_with_a_fault(
    env: WorkflowEnvironment, sim: SimServer, prefix: str, fault: dict[str, Any]
) -> tuple[JobResult, WorkflowHistory]:
    """The three-provider job at catalog prices, with ``fault`` queued on a freshly reset simulator;
    its result and history."""
    catalog = load_catalog(CATALOG)
    gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url, catalog_path=CATALOG), catalog)
    spec = three_provider_spec(prefix)
    sim_call(sim, "/_sim/reset", {})
    sim_call(sim, "/_sim/faults", fault)
    try:
        async with make_worker(env.client, gateway=gateway) as worker:
            handle = await start_job(env.client, worker.task_queue, spec)
            return await handle.result(), await handle.fetch_history()
    finally:
        await gateway.aclose()


@pytest.mark.parametrize("explicit_compatible_url", [False, True], ids=["default-routes", "explicit-url"])
async def test_three_providers_in_one_job_match_the_simulator(
    ts_env: WorkflowEnvironment, sim: SimServer, explicit_compatible_url: bool
) -> None:
    """openai:, anthropic: and openai-compatible: agents run end to end; tokens per model equal the
    simulator's tally and each turn costs exactly its model's price times its usage."""
    settings = ProviderSettings(
        sim_url=sim.url,
        catalog_path=CATALOG,
        openai_compatible_base_url=f"{sim.url}/v1" if explicit_compatible_url else None,
    )
    catalog = load_catalog(CATALOG)
    gateway = ModelCallActivities(settings, catalog)
    # The explicit URL is a real openai-compatible route (not the simulator fallback), with its options.
    assert settings.endpoint("openai-compatible").simulated is not explicit_compatible_url
    spec = three_provider_spec("providers")
    sim_call(sim, "/_sim/reset", {})
    try:
        async with make_worker(ts_env.client, gateway=gateway) as worker:
            result = await run_job(ts_env.client, worker.task_queue, spec)
            turns = await transcript_of(ts_env.client.get_workflow_handle(spec.id or ""))
    finally:
        await gateway.aclose()
    assert result.stop_reason is StopReason.completed
    assert {turn.provider for turn in turns} == {"openai", "anthropic", "openai-compatible"}
    assert len(turns) == 3
    tally = sim_call(sim, "/_sim/tally")
    assert set(tally["models"]) == {"gpt-4o-mini", "claude-haiku-4-5", "local-llama"}
    sources = {}
    for turn in turns:
        info = resolve(turn.model, catalog)
        sources[info.provider] = info.price_source
        assert not turn.usage.estimated
        served = tally["models"][info.model]
        assert (turn.usage.input_tokens, turn.usage.output_tokens) == (
            served["input_tokens"],
            served["output_tokens"],
        )
        assert turn.cost_usd == info.price.cost(turn.usage)
    assert result.ledger.usage.input_tokens == tally["total"]["input_tokens"]
    assert result.ledger.usage.output_tokens == tally["total"]["output_tokens"]
    assert result.ledger.cost_usd == sum(turn.cost_usd or 0 for turn in turns)
    assert result.ledger.cost_usd > 0
    # genai-prices knows the hosted models; the local one is priced by the catalog.
    assert sources == {"openai": "genai-prices", "anthropic": "genai-prices", "openai-compatible": "catalog"}
    assert resolve("local-llama", catalog).price.input_per_mtok == Decimal("0.05")


@pytest.mark.e2e
def test_cli_runs_the_three_provider_job_with_the_catalog(
    dev_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """`HARNESS_CATALOG=examples/catalog.yaml harness run examples/providers.yaml` completes and spends
    exactly the simulator's tally; without the catalog the aliases are refused before anything starts."""
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "HARNESS_SIM_URL": sim.url,
        "HARNESS_TASK_QUEUE": f"providers-{uuid.uuid4().hex[:8]}",
    }
    refused = harness("run", "examples/providers.yaml", env=env)
    assert refused.returncode == 2
    assert "nor a catalog alias" in refused.stderr and "HARNESS_CATALOG" in refused.stderr

    sim_call(sim, "/_sim/reset", {})
    done = harness("run", "examples/providers.yaml", env={**env, "HARNESS_CATALOG": str(CATALOG)})
    assert done.returncode == 0, done.stderr
    assert "stop reason  completed" in done.stdout
    total = sim_call(sim, "/_sim/tally")["total"]
    assert f"({total['input_tokens']} in, {total['output_tokens']} out) in 3 calls" in done.stdout


@pytest.mark.e2e
async def test_rate_limit_is_retried_by_temporal_once_and_charged_once(
    dev_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """A 429 with retry-after on the anthropic: step is retried by Temporal alone, after the server's
    delay (longer than the policy's first interval); the job completes and charges one call per step."""
    fault = {"kind": "429", "model": "claude-haiku-4-5", "retry_after": 2}
    result, history = await run_with_a_fault(dev_env, sim, "rate-limited", fault)
    assert result.stop_reason is StopReason.completed
    tally = sim_call(sim, "/_sim/tally")
    haiku = tally["models"]["claude-haiku-4-5"]
    # Two requests reached the server (the 429 and the success): no SDK retry on top of Temporal's.
    assert (haiku["requests"], haiku["completed"]) == (2, 1)
    assert result.ledger.calls == 3 == tally["total"]["completed"]
    assert result.ledger.usage.input_tokens == tally["total"]["input_tokens"]
    assert result.ledger.usage.output_tokens == tally["total"]["output_tokens"]
    scheduled_at = {
        event.event_id: event.event_time.ToDatetime()
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    }
    retries = [
        (event.activity_task_started_event_attributes, event.event_time.ToDatetime())
        for event in history.events
        if event.HasField("activity_task_started_event_attributes")
        and event.activity_task_started_event_attributes.attempt > 1
    ]
    assert len(retries) == 1
    started, started_at = retries[0]
    assert started.attempt == 2
    assert started.last_failure.application_failure_info.type == "RateLimited"
    # The retry waited for the server's retry-after (2 s), not the policy's first interval (1 s).
    assert (started_at - scheduled_at[started.scheduled_event_id]).total_seconds() >= 1.9


@pytest.mark.e2e
async def test_bad_request_ends_the_job_failed_naming_the_cause(
    dev_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """A 400 on the anthropic: step is not retried: the job ends with stop reason failed, naming the
    agent, the model and BadRequest, with no output and the draft that finished before it among
    its outputs."""
    fault = {"kind": "400", "model": "claude-haiku-4-5"}
    result, history = await run_with_a_fault(dev_env, sim, "bad-request", fault)
    assert result.stop_reason is StopReason.failed
    assert "critic" in result.explanation and "reviewer" in result.explanation
    assert "BadRequest" in result.explanation and "HTTP 400" in result.explanation
    assert list(result.outputs) == ["draft"] and result.outputs["draft"] and result.output == ""
    tally = sim_call(sim, "/_sim/tally")
    assert tally["models"]["claude-haiku-4-5"]["requests"] == 1  # not retried
    assert "local-llama" not in tally["models"]  # nothing after the failed step ran
    assert result.ledger.per_agent["drafter"].output_tokens == tally["models"]["gpt-4o-mini"]["output_tokens"]
    # The failure tells the workflow what the rejected call spent: nothing.
    (failed,) = [
        event.activity_task_failed_event_attributes.failure.application_failure_info
        for event in history.events
        if event.HasField("activity_task_failed_event_attributes")
    ]
    assert failed.type == "BadRequest" and failed.non_retryable
    details = pydantic_data_converter.payload_converter.from_payload(failed.details.payloads[0], dict)
    assert Usage.model_validate(details["usage"]) == Usage()
    # The rejected call is charged as a failed call (today: its reservation, marked estimated), so
    # the ledger never shows less than the provider served.
    assert result.ledger.usage.output_tokens >= tally["total"]["output_tokens"]


async def test_a_default_worker_closes_its_provider_clients(
    ts_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """The worker `harness run` and `harness worker` build closes the gateway's SDK clients (their
    connection pools) when it stops."""
    spec = parse_spec(
        {
            "id": f"closing-{uuid.uuid4().hex[:8]}",
            "task": "Say hello.",
            "agents": [{"name": "a", "model": "sim:writer", "max_output_tokens": 20}],
            "steps": [{"id": "one", "agent": "a"}],
        }
    )
    queue = f"closing-{uuid.uuid4().hex[:8]}"
    worker = build_worker(ts_env.client, queue)
    (gateway,) = {
        fn.__self__ for fn in worker.config()["activities"] if isinstance(fn.__self__, ModelCallActivities)
    }
    async with worker:
        await run_job(ts_env.client, queue, spec)
        clients = list(gateway._clients.values())
    assert clients and all(client.is_closed() for client in clients)
