"""Many jobs, one cluster: model and tool calls on their roles' own task queues, workers that serve a
subset of the roles, and a provider's rate limit held by Temporal for every worker at once (on the
real dev server)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType, VersioningBehavior
from temporalio.api.workflowservice.v1 import SetWorkerDeploymentCurrentVersionRequest
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.catalog import ModelCatalog, load_catalog
from activities.config import ProviderSettings
from activities.fairness import FairnessActivities
from activities.model_call import ModelCallActivities
from activities.queue_limits import queue_rate, read_limit
from contracts.fairness import FairnessState
from contracts.jobs import StopReason
from contracts.names import MODEL_CALL_ACTIVITY, RESOLVE_MODELS_ACTIVITY, fairness_workflow_id, models_queue
from contracts.spec import JobSpec, parse_spec
from harness import client as harness_client
from harness.sim import SimServer
from tests.helpers import harness, make_worker, sim_call, transcript_of, until
from worker import build_worker


def one_step(**overrides: Any) -> JobSpec:
    data: dict[str, Any] = {
        "id": f"cluster-{uuid.uuid4().hex[:8]}",
        "task": "Say hello.",
        "agents": [{"name": "writer", "model": "sim:echo", "max_output_tokens": 20}],
        "steps": [{"id": "s", "agent": "writer", "prompt": "{task}"}],
    }
    data.update(overrides)
    return parse_spec(data)


async def scheduled_queues(handle: WorkflowHandle[Any, Any]) -> dict[str, set[str]]:
    """The task queues each activity type was scheduled on."""
    queues: dict[str, set[str]] = {}
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            queues.setdefault(attributes.activity_type.name, set()).add(attributes.task_queue.name)
    return queues


def split_gateway(sim: SimServer) -> ModelCallActivities:
    """Model calls of a deployment that splits roles (``HARNESS_ROLE_QUEUES=1``)."""
    return ModelCallActivities(ProviderSettings(sim_url=sim.url), role_queues=True)


async def test_a_job_runs_its_calls_on_its_own_queue_unless_roles_are_split(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """By default a job's model call goes to the job's own queue (the worker running the job runs
    it at once), and a worker for only some of the roles is refused."""
    async with make_worker(dev_env.client, gateway) as worker:
        assert worker.queues == [worker.task_queue]
        handle = await harness_client.start_job(dev_env.client, one_step(), queue=worker.task_queue)
        assert (await handle.result()).stop_reason is StopReason.completed
    assert (await scheduled_queues(handle))[MODEL_CALL_ACTIVITY] == {worker.task_queue}
    with pytest.raises(ValueError, match="HARNESS_ROLE_QUEUES=1"):
        build_worker(dev_env.client, "q", activities=[gateway.model_call], roles=["models"])


async def test_workers_of_separate_roles_serve_one_job(dev_env: WorkflowEnvironment, sim: SimServer) -> None:
    """Roles split: a worker serving only ``jobs`` and another serving only ``models`` run a job
    together: its model call goes to ``Q-models``, its model resolution stays on ``Q``."""
    queue = f"roles-{uuid.uuid4().hex[:8]}"
    gateway = split_gateway(sim)
    activities = [gateway.model_call, gateway.resolve_models]
    jobs = build_worker(dev_env.client, queue, activities=activities, roles=["jobs"])
    models = build_worker(dev_env.client, queue, activities=activities, roles=["models"])
    assert jobs.queues == [queue] and models.queues == [f"{queue}-models"]
    async with jobs, models:
        handle = await harness_client.start_job(dev_env.client, one_step(), queue=queue)
        result = await handle.result()
    assert result.stop_reason is StopReason.completed
    queues = await scheduled_queues(handle)
    assert queues[MODEL_CALL_ACTIVITY] == {models_queue(queue)}
    assert queues[RESOLVE_MODELS_ACTIVITY] == {queue}


async def test_a_job_waits_for_a_worker_of_the_role_it_needs(
    dev_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """Roles split: with only a ``jobs`` worker the model call waits on ``Q-models`` (no other
    worker takes it); a ``models`` worker that joins later runs it and the job ends."""
    queue = f"roles-late-{uuid.uuid4().hex[:8]}"
    gateway = split_gateway(sim)
    activities = [gateway.model_call, gateway.resolve_models]
    async with build_worker(dev_env.client, queue, activities=activities, roles=["jobs"]):
        handle = await harness_client.start_job(dev_env.client, one_step(), queue=queue)
        for _ in range(100):
            pending = (await handle.describe()).raw_description.pending_activities
            if pending:
                break
            await asyncio.sleep(0.05)
        [waiting] = pending
        assert waiting.activity_type.name == MODEL_CALL_ACTIVITY
        await asyncio.sleep(1.0)
        assert (await handle.describe()).raw_description.pending_activities[0].attempt == 1
        async with build_worker(dev_env.client, queue, activities=activities, roles=["models"]):
            result = await handle.result()
    assert result.stop_reason is StopReason.completed


def limited_catalog(rps: float) -> ModelCatalog:
    """The built-in catalog with the simulator limited to ``rps`` requests per second."""
    return load_catalog().merged(ModelCatalog.from_yaml(f"providers: {{sim: {{rps: {rps}}}}}"))


async def test_a_burst_of_200_jobs_holds_the_providers_rate_limit(
    dev_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """200 jobs started at once against a simulator limited to 5 requests per second: the model
    calls go to the simulator's own queue, whose rate (set when the worker starts) lets no 5-second
    window see more than 25 requests, start-up burst included, and every job ends."""
    sim_call(sim, "/_sim/reset", {})
    gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url), catalog=limited_catalog(5))
    async with make_worker(dev_env.client, gateway) as worker:
        limit = await read_limit(dev_env.client, models_queue(worker.task_queue, "sim"))
        assert limit.rps is not None and abs(limit.rps - queue_rate(5)) < 1e-3
        handles = [
            await harness_client.start_job(dev_env.client, one_step(), queue=worker.task_queue)
            for _ in range(200)
        ]
        results = await asyncio.gather(*(handle.result() for handle in handles))
    assert all(result.stop_reason is StopReason.completed for result in results)
    tally = sim_call(sim, "/_sim/tally")
    assert tally["total"]["completed"] == 200
    assert tally["busiest"]["5"] <= 25, tally["busiest"]
    queues = await scheduled_queues(handles[0])
    assert queues[MODEL_CALL_ACTIVITY] == {models_queue(worker.task_queue, "sim")}


def test_limits_are_set_and_shown_on_the_running_cluster(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """``harness limits set sim --rps 8`` sets the simulator's queue to 6.153 rps (room for the
    start-up burst), ``show`` reads it back; a provider the catalog gives no queue of its own, a
    bad rate and an unknown provider are refused (exit 2)."""
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("providers:\n  sim: {rps: 5}\n")
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "HARNESS_CATALOG": str(catalog),
        "HARNESS_TASK_QUEUE": f"limits-{uuid.uuid4().hex[:6]}",
    }
    done = harness("limits", "set", "sim", "--rps", "8", "--tenant-rps", "2", env=env)
    assert done.returncode == 0, done.stderr
    assert "task queue" in done.stdout and "6.153 rps" in done.stdout and "1.538 per tenant" in done.stdout
    shown = harness("limits", "show", env=env)
    assert shown.returncode == 0, shown.stderr
    [sim_row] = [line for line in shown.stdout.splitlines() if line.strip("│ ").startswith("sim ")]
    assert "6.153" in sim_row and "1.538" in sim_row and f"{env['HARNESS_TASK_QUEUE']}-models-sim" in sim_row
    for args, message in (
        (["openai", "--rps", "3"], "provider 'openai' has no rate limit in the catalog"),
        (["sim", "--rps", "0"], "--rps must be positive"),
        (["nope", "--rps", "1"], "unknown provider 'nope'"),
        (["sim"], "give --rps R"),
    ):
        refused = harness("limits", "set", *args, env=env)
        assert refused.returncode == 2 and message in refused.stderr, (args, refused.stderr)
    lifted = harness("limits", "set", "sim", "--off", env=env)
    assert lifted.returncode == 0, lifted.stderr
    shown = harness("limits", "show", env=env)
    [sim_row] = [line for line in shown.stdout.splitlines() if line.strip("│ ").startswith("sim ")]
    assert "6.153" not in sim_row


async def test_a_versioned_worker_runs_jobs_pinned_to_its_build(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``HARNESS_DEPLOYMENT_NAME`` and ``HARNESS_BUILD_ID`` set, the worker polls as that
    version of the deployment; once it is the current version (``temporal worker deployment
    set-current-version``), a job runs on it and stays pinned to that build."""
    deployment = f"harness-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("HARNESS_DEPLOYMENT_NAME", deployment)
    monkeypatch.setenv("HARNESS_BUILD_ID", "v1")
    client = dev_env.client
    async with make_worker(client, gateway) as worker:

        async def made_current() -> bool:
            try:
                await client.workflow_service.set_worker_deployment_current_version(
                    SetWorkerDeploymentCurrentVersionRequest(
                        namespace=client.namespace, deployment_name=deployment, build_id="v1"
                    )
                )
            except RPCError:  # the version exists once its workers have polled
                return False
            return True

        await until(made_current, failure="the deployment version never became current")
        handle = await harness_client.start_job(client, one_step(), queue=worker.task_queue)
        result = await handle.result()
    assert result.stop_reason is StopReason.completed
    info = (await handle.describe()).raw_description.workflow_execution_info.versioning_info
    assert info.deployment_version.deployment_name == deployment
    assert info.deployment_version.build_id == "v1"
    assert info.behavior == VersioningBehavior.VERSIONING_BEHAVIOR_PINNED


def chain_of(tenant: str, tokens: int, tps: int, steps: int = 10) -> JobSpec:
    """A job of ``tenant`` with ``steps`` calls in a row, each reply ``tokens`` long, in 0.2 s."""
    reply = f"[[sim latency=0 tps={tps} tokens={tokens}]]"
    return one_step(
        id=f"{tenant}-{uuid.uuid4().hex[:8]}",
        tenant=tenant,
        agents=[{"name": "writer", "model": "sim:echo", "max_output_tokens": 500}],
        steps=[
            {"id": f"s{n}", "agent": "writer", "prompt": f"Part {n} of {{task}} {reply}"}
            for n in range(steps)
        ],
    )


async def test_tenants_share_the_model_queue_by_tokens(dev_env: WorkflowEnvironment, sim: SimServer) -> None:
    """Two tenants of equal weight run four 10-call jobs each on a worker with one model-call slot;
    the heavy tenant's replies are four times the light one's. With ``HARNESS_TOKEN_FAIRNESS`` the
    TokenFairness workflow gives the light tenant about four times the weight, so while both have
    calls waiting each is served 0.5 +- 0.10 of the tokens (by calls alone the heavy one would get
    about 0.77). Weights order the calls queued after they are written, not a backlog already
    queued: hence jobs of many calls, the agent's usual shape."""
    client = dev_env.client
    # Token fairness orders a model queue's dispatch: the calls must go through one (roles split).
    gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url), token_fairness=True, role_queues=True)
    fairness = FairnessActivities(client)
    queue = f"tokens-{uuid.uuid4().hex[:8]}"
    specs = [chain_of("heavy", 400, 2000) for _ in range(4)] + [chain_of("light", 100, 500) for _ in range(4)]
    handles = [await harness_client.start_job(client, spec, queue=queue) for spec in specs]
    activities = [gateway.model_call, gateway.resolve_models, fairness.set_fairness_weights]
    async with make_worker(client, gateway, activities=activities, queue=queue, max_concurrent_activities=1):
        await asyncio.gather(*(handle.result() for handle in handles))
        state = await client.get_workflow_handle(fairness_workflow_id(queue)).query(
            "state", result_type=FairnessState
        )
        await client.get_workflow_handle(fairness_workflow_id(queue)).terminate()
        served = [(h.id.split("-")[0], turn) for h in handles for turn in await transcript_of(h)]
    turns = sorted((turn.ended_at, tenant, turn.usage.total_tokens) for tenant, turn in served)
    # The contested stretch: until one tenant has no call left.
    last = {
        tenant: max(i for i, turn in enumerate(turns) if turn[1] == tenant) for tenant in ("heavy", "light")
    }
    contested = turns[: min(last.values()) + 1]
    tokens = {tenant: sum(t[2] for t in contested if t[1] == tenant) for tenant in ("heavy", "light")}
    share = tokens["heavy"] / (tokens["heavy"] + tokens["light"])
    assert abs(share - 0.5) <= 0.10, (share, tokens, len(contested))
    weights = state.written[models_queue(queue)]
    assert weights["heavy"] == 1.0 and 2.0 <= weights["light"] <= 8.0, weights


async def test_a_providers_tpm_is_held_through_its_queues_rate(
    dev_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """The simulator limited to 50 rps and 24,000 tokens a minute: after calls of about 200 tokens
    are served, the TokenFairness workflow sets its queue to tpm / 60 / tokens per call (about 2
    requests a second, far below the 50 of its rps), which Temporal then holds."""
    client = dev_env.client
    catalog = load_catalog().merged(ModelCatalog.from_yaml("providers: {sim: {rps: 50, tpm: 24000}}"))
    gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url), catalog=catalog)
    fairness = FairnessActivities(client)
    activities = [gateway.model_call, gateway.resolve_models, fairness.set_queue_rate]
    agents = [{"name": "writer", "model": "sim:writer", "max_output_tokens": 200}]
    steps = [{"id": "s", "agent": "writer", "prompt": "{task} [[sim latency=0 tokens=150]]"}]
    async with make_worker(client, gateway, activities=activities) as worker:
        queue = worker.task_queue
        for spec in [one_step(agents=agents, steps=steps) for _ in range(6)]:
            await (await harness_client.start_job(client, spec, queue=queue)).result()
        fair = client.get_workflow_handle(fairness_workflow_id(queue))

        async def written() -> FairnessState | None:
            state = await fair.query("state", result_type=FairnessState)
            return state if state.rates else None

        state = await until(written, failure="no rate was written")
        limit = await read_limit(client, models_queue(queue, "sim"))
        await fair.terminate()
    sim_queue = models_queue(queue, "sim")
    size = state.sizes[sim_queue]
    rate = state.rates[sim_queue]
    assert rate == pytest.approx(24000 / 60 / (size.tokens / size.calls))
    assert 1.0 < rate < 3.0, rate
    assert limit.rps == pytest.approx(queue_rate(rate), abs=1e-3)
