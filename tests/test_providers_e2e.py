"""One job across OpenAI, Anthropic and an OpenAI-compatible server, all served by the simulator
through the real SDKs: the ledger matches the simulator's tally to the token, at catalog prices."""

from __future__ import annotations

import uuid

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from harness.catalog import load_catalog, resolve
from harness.config import ProviderSettings
from harness.contracts import JobResult, StopReason, TurnRecord
from harness.sim import SimServer
from harness.spec import load_spec
from tests.conftest import ROOT, make_worker, sim_call

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
    spec = load_spec(ROOT / "examples" / "providers.yaml").model_copy(
        update={"id": f"providers-{uuid.uuid4().hex[:8]}"}
    )
    sim_call(sim, "/_sim/reset", {})
    async with make_worker(ts_env.client, gateway) as worker:
        result = await ts_env.client.execute_workflow(
            "SequentialJob", spec, id=spec.id or "", task_queue=worker.task_queue, result_type=JobResult
        )
        turns = await ts_env.client.get_workflow_handle(spec.id or "").query(
            "transcript", result_type=list[TurnRecord]
        )
    assert result.stop_reason is StopReason.completed
    assert {turn.provider for turn in turns} == {"openai", "anthropic", "openai-compatible"}
    tally = sim_call(sim, "/_sim/tally")
    for turn in turns:
        info = resolve(turn.model, catalog)
        served = tally["models"][info.model]
        assert (turn.usage.input_tokens, turn.usage.output_tokens) == (
            served["input_tokens"],
            served["output_tokens"],
        )
        assert turn.cost_usd == info.price.cost(turn.usage)
    assert result.ledger.usage.input_tokens == tally["total"]["input_tokens"]
    assert result.ledger.usage.output_tokens == tally["total"]["output_tokens"]
    assert result.ledger.cost_usd == sum(turn.cost_usd or 0 for turn in turns)
