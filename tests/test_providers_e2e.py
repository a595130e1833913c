"""One job across OpenAI, Anthropic and an OpenAI-compatible server, all served by the simulator
through the real SDKs: the ledger matches the simulator's tally to the token, at catalog prices."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from harness.catalog import load_catalog, resolve
from harness.config import ProviderSettings
from harness.contracts import JobResult, StopReason, TurnRecord
from harness.sim import SimServer
from harness.spec import load_spec
from tests.conftest import ROOT, make_worker, sim_call
from tests.test_cli import harness

CATALOG = ROOT / "examples" / "catalog.yaml"


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
    spec = load_spec(ROOT / "examples" / "providers.yaml").model_copy(
        update={"id": f"providers-{uuid.uuid4().hex[:8]}"}
    )
    sim_call(sim, "/_sim/reset", {})
    try:
        async with make_worker(ts_env.client, gateway=gateway) as worker:
            result = await ts_env.client.execute_workflow(
                "SequentialJob", spec, id=spec.id or "", task_queue=worker.task_queue, result_type=JobResult
            )
            turns = await ts_env.client.get_workflow_handle(spec.id or "").query(
                "transcript", result_type=list[TurnRecord]
            )
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
    assert "nor a catalog alias" in refused.stderr

    sim_call(sim, "/_sim/reset", {})
    done = harness("run", "examples/providers.yaml", env={**env, "HARNESS_CATALOG": str(CATALOG)})
    assert done.returncode == 0, done.stderr
    assert "stop reason  completed" in done.stdout
    total = sim_call(sim, "/_sim/tally")["total"]
    assert f"({total['input_tokens']} in, {total['output_tokens']} out) in 3 calls" in done.stdout
