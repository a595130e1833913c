"""Tools across processes: a worker SIGKILLed mid tool call, and an MCP server's secret that stays
on the worker.
"""

from __future__ import annotations

import json
import logging
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from activities.tool_catalog import load_tool_catalog
from activities.tools import ToolActivities
from contracts.jobs import JobResult, StopReason
from contracts.names import TOOLS_ENV
from contracts.spec import parse_spec
from harness.sim import SimServer
from tests.helpers import make_worker, start_job, start_worker, stop, transcript_of, until
from tests.workflows.tool_fixtures import LOG_ENV, read_log

SERVER = Path(__file__).resolve().parent.parent / "activities" / "mcp_http_server.py"
LOGGERS = ("temporalio", "harness", "activities", "mcp", "openai", "httpx", "httpcore")


def directive(tool: str, **arguments: Any) -> str:
    quoted = json.dumps(arguments).replace('"', '\\"')
    return f'[[sim tool={tool} args="{quoted}"]]'


def one_tool_job(tool_ref: str, call: str, **arguments: Any) -> Any:
    return parse_spec(
        {
            "id": f"tools-e2e-{uuid.uuid4().hex[:8]}",
            "task": "Use the tool.",
            "agents": [
                {"name": "clerk", "model": "sim:tool-user", "tools": [tool_ref], "max_output_tokens": 100}
            ],
            "steps": [{"id": "act", "agent": "clerk", "prompt": "{task} " + directive(call, **arguments)}],
        }
    )


async def test_a_sigkilled_worker_mid_call_does_not_run_a_non_idempotent_tool_twice(
    dev_env: WorkflowEnvironment, sim: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """charge_card (not idempotent) starts on a worker process that is then SIGKILLed: the new worker
    gets the next attempt after the heartbeat timeout and does not run it again; the record says
    ``not retried`` and the job ends with an answer."""
    log = str(tmp_path / "tools.log")
    catalog = tmp_path / "tools.yaml"
    catalog.write_text(yaml.safe_dump({"python": ["tests.workflows.tool_fixtures"]}))
    monkeypatch.setenv(LOG_ENV, log)
    monkeypatch.setenv(TOOLS_ENV, str(catalog))
    queue = f"tools-kill-{uuid.uuid4().hex[:8]}"
    spec = one_tool_job("charge_card", "charge_card", amount=7, seconds=30)
    first = start_worker(dev_env, sim, queue)
    second = None
    try:
        handle: WorkflowHandle[Any, JobResult] = await start_job(dev_env.client, queue, spec)
        await until(lambda: _started(log), within=60, failure="charge_card never started")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        second = start_worker(dev_env, sim, queue)
        result = await handle.result()
        turns = await transcript_of(handle)
    finally:
        stop(first)
        if second is not None:
            stop(second)
    assert result.stop_reason is StopReason.completed, result.explanation
    (call,) = [call for turn in turns for call in turn.tool_calls]
    assert call.outcome == "not retried"
    assert "not run again" in call.result_preview
    starts = [entry for entry in read_log(log) if entry["event"] == "start"]
    assert len(starts) == 1  # charged once, by the killed worker
    assert not [entry for entry in read_log(log) if entry["event"] == "end"]


async def _started(log: str) -> bool:
    return any(entry.get("event") == "start" for entry in read_log(log))


async def test_an_mcp_servers_secret_stays_on_the_worker(
    dev_env: WorkflowEnvironment,
    gateway: ModelCallActivities,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A canary in an MCP server's environment (``${TOOL_CANARY}`` in the catalog) reaches the server,
    and is in no history event, memo, search attribute, description, result or log line."""
    canary = f"sk-canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("TOOL_CANARY", canary)
    catalog = tmp_path / "tools.yaml"
    server = {"command": "python", "args": [str(SERVER), "--stdio"], "env": {"API_TOKEN": "${TOOL_CANARY}"}}
    catalog.write_text(yaml.safe_dump({"mcp": {"envcheck": server}}))
    tools = ToolActivities(load_tool_catalog(catalog))
    spec = one_tool_job("mcp:envcheck/*", "envcheck__has_env", name="API_TOKEN")
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    try:
        activities = [gateway.model_call, gateway.resolve_models, tools.list_tools, tools.tool_call]
        async with make_worker(dev_env.client, gateway, activities=activities) as worker:
            handle = await start_job(dev_env.client, worker.task_queue, spec)
            result = await handle.result()
            history = await handle.fetch_history()
            description = await handle.describe()
            turns = await transcript_of(handle)
    finally:
        await tools.aclose()
    assert result.stop_reason is StopReason.completed, result.explanation
    (call,) = [call for turn in turns for call in turn.tool_calls]
    assert call.outcome == "ok"
    assert call.result_preview.strip().lower() == "true"  # the server has it
    visible = "\n".join(
        [
            history.to_json(),
            json.dumps(await description.memo(), default=str),
            repr(description.typed_search_attributes),
            repr(description.raw_description),
            result.model_dump_json(),
            caplog.text,
            "\n".join(repr(record.__dict__) for record in caplog.records),
        ]
    )
    assert caplog.records
    assert canary not in visible
    assert "sk-canary" not in visible
