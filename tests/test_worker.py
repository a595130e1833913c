"""The worker's start-up: workflow modules without bytecode are recompiled on every run; its roles,
drain timeout and versioning come from flags or the environment; it imports a provider SDK with its
first call to that provider and the MCP SDK only for a tool catalog naming a server."""

from __future__ import annotations

import asyncio
import compileall
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.common import VersioningBehavior
from temporalio.testing import WorkflowEnvironment

from harness.sim import Fault, SimServer
from tests.helpers import ROOT
from worker import deployment_config, drain_timeout, parse_roles, uncompiled_workflow_modules


def test_modules_without_current_bytecode_are_named(tmp_path: Path) -> None:
    module = tmp_path / "mode.py"
    module.write_text("X = 1\n", encoding="utf-8")
    assert uncompiled_workflow_modules(tmp_path) == [module]
    assert compileall.compile_dir(str(tmp_path), quiet=1)
    assert uncompiled_workflow_modules(tmp_path) == []
    later = module.stat().st_mtime + 10
    os.utime(module, (later, later))  # edited after it was compiled
    assert uncompiled_workflow_modules(tmp_path) == [module]


def test_roles_drain_and_versioning_come_from_flags_or_the_environment() -> None:
    """``--queues`` / ``HARNESS_WORKER_QUEUES`` name any subset of the roles (in their order; empty:
    all; an unknown one is refused by name); the drain timeout is seconds, never negative; worker
    versioning needs both the deployment name and the build id, and pins the workflows it starts."""
    assert parse_roles(None) == parse_roles("") == ("jobs", "models", "tools")
    assert parse_roles("tools, jobs") == ("jobs", "tools")
    with pytest.raises(ValueError, match="unknown queue 'gpu'"):
        parse_roles("jobs,gpu")
    assert drain_timeout("") == timedelta(seconds=30) and drain_timeout("2.5") == timedelta(seconds=2.5)
    with pytest.raises(ValueError, match="0 or more seconds"):
        drain_timeout("-1")
    assert deployment_config({}) is None
    with pytest.raises(ValueError, match="set both"):
        deployment_config({"HARNESS_DEPLOYMENT_NAME": "harness"})
    config = deployment_config({"HARNESS_DEPLOYMENT_NAME": "harness", "HARNESS_BUILD_ID": "v2"})
    assert config is not None and config.use_worker_versioning
    assert (config.version.deployment_name, config.version.build_id) == ("harness", "v2")
    assert config.default_versioning_behavior is VersioningBehavior.PINNED


# Run in a fresh interpreter: what ``import worker`` and a running worker load, step by step.
SDK_PROBE = """
import asyncio, json, os, sys
import worker
from contracts.spec import parse_spec
from harness.client import start_job

def loaded():
    return [name for name in ("openai", "anthropic", "mcp") if name in sys.modules]

def spec(model):
    return parse_spec({"mode": "sequential", "task": "hi", "agents": [{"name": "a", "model": model}],
                       "steps": [{"id": "one", "agent": "a", "prompt": "{task}"}]})

async def main():
    seen = {"imported": loaded()}
    client = await worker.connect()
    async with worker.build_worker(client, f"sdk-probe-{os.getpid()}") as group:
        seen["started"] = loaded()
        for step, model in (("sim", "sim:echo"), ("anthropic refused", "anthropic:claude-haiku-4-5"),
                            ("anthropic", "anthropic:claude-haiku-4-5")):
            result = await (await start_job(client, spec(model), group.task_queue)).result()
            seen[step] = loaded()
            seen[step + " ended"] = [result.stop_reason, result.explanation]
    os.environ["HARNESS_TOOLS"] = sys.argv[1]
    async with worker.build_worker(client, f"sdk-probe-tools-{os.getpid()}"):
        seen["tools started"] = loaded()
    print(json.dumps(seen))

asyncio.run(main())
"""


async def test_a_worker_imports_each_sdk_when_it_first_needs_it(
    dev_env: WorkflowEnvironment, sim: SimServer, tmp_path: Path
) -> None:
    """A worker started with no tool catalog has imported neither the Anthropic nor the MCP SDK; a
    ``sim:`` job loads the OpenAI SDK alone; the first Anthropic call loads that SDK, and its error is
    still mapped (a 400 fails the job as BadRequest, not retried); a tool catalog naming an MCP
    server loads the MCP SDK when the worker starts."""
    catalog = tmp_path / "tools.yaml"
    catalog.write_text("mcp:\n  time: {command: python, args: [-m, mcp_server_time]}\n", encoding="utf-8")
    sim.reset()
    sim.add_fault(Fault(kind="400", model="claude-haiku-4-5"))  # the first Anthropic call's answer
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "HARNESS_SIM_URL": sim.url,
    }
    for name in ("HARNESS_TOOLS", "HARNESS_CATALOG", "HARNESS_ROLE_QUEUES"):
        env.pop(name, None)
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", SDK_PROBE, str(catalog)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["imported"] == seen["started"] == []
    assert seen["sim"] == ["openai"]
    stop_reason, explanation = seen["anthropic refused ended"]
    assert stop_reason == "failed" and "BadRequest" in explanation
    assert seen["anthropic refused"] == seen["anthropic"] == ["openai", "anthropic"]
    assert seen["anthropic ended"][0] == "completed"
    assert seen["tools started"] == ["openai", "anthropic", "mcp"]
