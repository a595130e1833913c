"""Temporal-native priority and fairness: every job's workflow, calls and child jobs carry a
``Priority`` (priority key from the job's priority, fairness key and weight from its tenant or
account), ``set_priority`` reaches what the job starts next, and on one task queue the dev server's
matching (``matching.enableFairness``, see ``harness.devserver.DYNAMIC_CONFIG``) shares a worker
between tenants by weight."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

from temporalio.api.common.v1 import Priority as PriorityProto
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from contracts.controls import GateDecision, SetPriorityRequest
from contracts.jobs import JobStatus, StopReason
from contracts.names import MODEL_CALL_ACTIVITY
from contracts.spec import PRIORITY_KEYS, JobSpec, parse_spec, priority_key
from harness import client as harness_client
from tests.helpers import close_order, harness, make_worker, start_account, status_of, until
from tests.workflows.test_delegation_team import delegation
from worker import WorkerGroup


def sequential(steps: int = 1, **overrides: Any) -> JobSpec:
    data: dict[str, Any] = {
        "id": f"prio-{uuid.uuid4().hex[:8]}",
        "mode": "sequential",
        "task": "Say hello.",
        "agents": [{"name": "writer", "model": "sim:echo", "max_output_tokens": 50}],
        "steps": [{"id": f"s{n}", "agent": "writer", "prompt": "{task}"} for n in range(1, steps + 1)],
    }
    data.update(overrides)
    return parse_spec(data)


def triple(priority: PriorityProto) -> tuple[int, str, float]:
    return priority.priority_key, priority.fairness_key, round(priority.fairness_weight, 3)


async def scheduled_priorities(handle: WorkflowHandle[Any, Any]) -> dict[str, list[int]]:
    """The priority key each activity type (and ``child``) was started with, in history order."""
    keys: dict[str, list[int]] = {}
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attributes = event.activity_task_scheduled_event_attributes
            keys.setdefault(attributes.activity_type.name, []).append(attributes.priority.priority_key)
        elif event.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            child = event.start_child_workflow_execution_initiated_event_attributes
            keys.setdefault("child", []).append(child.priority.priority_key)
    return keys


async def child_ids(handle: WorkflowHandle[Any, Any]) -> set[str]:
    """The workflow ids of the child jobs ``handle`` started."""
    return {
        event.start_child_workflow_execution_initiated_event_attributes.workflow_id
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED
    }


def test_the_spec_scale_maps_onto_temporal_priority_keys() -> None:
    """0-9 onto 1-5, in order, the default 3 onto Temporal's default 3 (documented in the README)."""
    assert [priority_key(p) for p in range(10)] == list(PRIORITY_KEYS)
    assert PRIORITY_KEYS[0] == 1 and PRIORITY_KEYS[-1] == 5 and priority_key(3) == 3
    assert list(PRIORITY_KEYS) == sorted(PRIORITY_KEYS)


async def test_a_jobs_workflow_calls_and_children_carry_its_priority_and_tenant(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A delegation job of priority 6 for tenant acme (weight 2.5): its workflow has priority key 4,
    fairness key acme, weight 2.5; every call and child job it starts has key 4, and the children
    inherit the tenant."""
    spec = delegation(priority=6, tenant="acme", tenant_weight=2.5)
    async with make_worker(dev_env.client, gateway) as worker:
        handle = await harness_client.start_job(dev_env.client, spec, queue=worker.task_queue)
        result = await handle.result()
    assert result.stop_reason is StopReason.completed
    described = await handle.describe()
    assert triple(described.raw_description.workflow_execution_info.priority) == (4, "acme", 2.5)
    keys = await scheduled_priorities(handle)
    assert keys["child"] and set(keys["child"]) == {4}, keys
    assert keys[MODEL_CALL_ACTIVITY] and set(keys[MODEL_CALL_ACTIVITY]) == {4}, keys
    children = await child_ids(handle)
    assert len(children) == 3, children
    for child_id in children:
        child = dev_env.client.get_workflow_handle(child_id)
        assert triple((await child.describe()).raw_description.workflow_execution_info.priority) == (
            4,
            "acme",
            2.5,
        )
        assert set((await scheduled_priorities(child))[MODEL_CALL_ACTIVITY]) == {4}, child_id


async def test_set_priority_reaches_the_calls_the_job_starts_next(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """Step one's call goes out at the spec's priority (3, key 3); ``set_priority job 0`` at the gate
    before step two sends step two's call at key 1."""
    spec = sequential(2, gates=[{"name": "go", "before_step": "s2"}])
    async with make_worker(dev_env.client, gateway) as worker:
        handle = await harness_client.start_job(dev_env.client, spec, queue=worker.task_queue)
        await until(lambda: _waiting(handle))
        await handle.execute_update("set_priority", SetPriorityRequest(task="job", priority=0))
        await handle.execute_update("approve", GateDecision(gate="go"), result_type=str)
        result = await handle.result()
    assert result.stop_reason is StopReason.completed
    assert (await scheduled_priorities(handle))[MODEL_CALL_ACTIVITY] == [3, 1]
    described = await handle.describe()
    assert triple(described.raw_description.workflow_execution_info.priority) == (3, "", 0)


async def _waiting(handle: WorkflowHandle[Any, Any]) -> bool:
    return (await status_of(handle)).status is JobStatus.waiting


async def test_an_accounts_weight_is_its_jobs_fairness_weight(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """``budget create --weight 3`` keeps the weight where a client reads it with no worker running;
    a job on the account gets it, a tenant's own weight wins, a bad weight is refused."""
    client = dev_env.client
    name = f"team-{uuid.uuid4().hex[:6]}"
    address = {"TEMPORAL_ADDRESS": client.service_client.config.target_host}
    done = harness("budget", "create", name, "--tokens", "1000", "--weight", "3", env=address)
    assert done.returncode == 0, done.stderr
    refused = harness("budget", "create", f"{name}-x", "--tokens", "1000", "--weight", "0", env=address)
    assert refused.returncode != 0 and "--weight must be from 0.001 to 1000" in refused.stderr
    on_account = await harness_client.job_priority(
        client, sequential(account=name, budget={"tokens": 100}, priority=0)
    )
    assert (on_account.priority_key, on_account.fairness_key, on_account.fairness_weight) == (1, name, 3.0)
    own = await harness_client.job_priority(
        client, sequential(account=name, budget={"tokens": 100}, tenant="acme", tenant_weight=0.5)
    )
    assert (own.fairness_key, own.fairness_weight) == ("acme", 0.5)
    nobody = await harness_client.job_priority(client, sequential())
    assert (nobody.priority_key, nobody.fairness_key, nobody.fairness_weight) == (3, None, None)
    # An account made without the CLI (no memo) has weight 1.
    bare = await start_account(client, "no-worker", tokens=1000)
    plain = await harness_client.job_priority(
        client, sequential(account=bare.id.removeprefix("account-"), budget={"tokens": 100})
    )
    assert plain.fairness_weight == 1.0
    await bare.terminate()
    await client.get_workflow_handle(f"account-{name}").terminate()


async def test_tenants_share_one_worker_by_weight(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """60 jobs of tenant big (weight 3) are started before 20 of tenant small (weight 1), all before
    any worker polls; one worker running one task at a time finishes three of big's for each of
    small's: big's share of the first half is 0.75 +- 0.05 (first in, first out would give it 1)."""
    queue = f"fair-{uuid.uuid4().hex[:8]}"
    specs = [sequential(tenant="big", tenant_weight=3, id=f"big-{uuid.uuid4().hex[:8]}") for _ in range(60)]
    specs += [
        sequential(tenant="small", tenant_weight=1, id=f"small-{uuid.uuid4().hex[:8]}") for _ in range(20)
    ]
    handles = [await harness_client.start_job(dev_env.client, spec, queue=queue) for spec in specs]
    async with one_slot_worker(dev_env.client, gateway, queue):
        await asyncio.gather(*(handle.result() for handle in handles))
    finished = await close_order(handles)
    first_half = Counter(job_id.split("-")[0] for job_id in finished[:40])
    assert 0.70 <= first_half["big"] / 40 <= 0.80, finished


def one_slot_worker(client: Client, gateway: ModelCallActivities, queue: str) -> WorkerGroup:
    """Workers running one task at a time, so the server's dispatch order is the order work runs in."""
    return make_worker(
        client,
        gateway,
        queue=queue,
        max_concurrent_activities=1,
        max_concurrent_workflow_tasks=1,
        max_cached_workflows=0,  # no sticky queue: a busy slot would hold its tasks for its timeout
    )


async def test_set_priority_moves_a_queued_job_ahead_of_equal_ones(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """Eight equal jobs wait for a worker; ``set_job_priority`` (what ``harness set-priority ID job
    0`` does first, with no worker) gives the last one priority key 1: one worker running one task
    at a time finishes it first."""
    queue = f"prio-q-{uuid.uuid4().hex[:8]}"
    handles = [await harness_client.start_job(dev_env.client, sequential(), queue=queue) for _ in range(8)]
    last = handles[-1]
    assert await harness_client.set_job_priority(dev_env.client, last.id, 0) == 1
    described = await last.describe()
    assert described.raw_description.workflow_execution_info.priority.priority_key == 1
    async with one_slot_worker(dev_env.client, gateway, queue):
        await asyncio.gather(*(handle.result() for handle in handles))
    assert (await close_order(handles))[0] == last.id


async def test_the_run_after_continue_as_new_keeps_the_jobs_priority(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A job that continues as new after every turn keeps its priority key, tenant and weight in
    every run (``continue_as_new`` takes no priority: the server carries the workflow's)."""
    spec = sequential(3, turns_per_run=1, priority=0, tenant="acme", tenant_weight=2)
    async with make_worker(dev_env.client, gateway) as worker:
        handle = await harness_client.start_job(dev_env.client, spec, queue=worker.task_queue)
        result = await handle.result()
    assert result.stop_reason is StopReason.completed and len(result.outputs) == 3

    async def three_runs() -> list[Any]:
        query = f"WorkflowId = '{handle.id}'"  # visibility may lag the runs a moment
        found = [execution async for execution in dev_env.client.list_workflows(query)]
        return found if len(found) == 3 else []

    runs = await until(three_runs, failure="the job did not show three runs")
    for execution in runs:
        run = dev_env.client.get_workflow_handle(handle.id, run_id=execution.run_id)
        priority = (await run.describe()).raw_description.workflow_execution_info.priority
        assert triple(priority) == (1, "acme", 2.0)
        assert set((await scheduled_priorities(run))[MODEL_CALL_ACTIVITY]) == {1}
