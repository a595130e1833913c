"""The tool examples run offline with `harness run ... --tools examples/tools-catalog.yaml`, as the
README shows: Python tools with an approval gate decided through the CLI, and mcp-server-time."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import yaml
from temporalio.testing import WorkflowEnvironment

from harness.sim import SimServer
from tests.helpers import HARNESS, ROOT, harness

CATALOG = "examples/tools-catalog.yaml"


def cli_env(env: WorkflowEnvironment, sim: SimServer, tmp_path: Path) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "HARNESS_SIM_URL": sim.url,
        "HARNESS_TASK_QUEUE": f"examples-{uuid.uuid4().hex[:8]}",
        "HARNESS_PUBLISHED_DIR": str(tmp_path / "published"),
    }


def test_mcp_example_asks_the_time_server(
    dev_env: WorkflowEnvironment, sim: SimServer, tmp_path: Path
) -> None:
    """examples/mcp.yaml: the agent calls mcp-server-time (a stdio subprocess of the worker) and
    answers with Tokyo's time."""
    done = harness("run", "examples/mcp.yaml", "--tools", CATALOG, env=cli_env(dev_env, sim, tmp_path))
    assert done.returncode == 0, done.stderr
    assert "stop reason  completed" in done.stdout
    assert '"timezone": "Asia/Tokyo"' in done.stdout and "+09:00" in done.stdout
    assert "; 1 tool call" in done.stdout and "1 tool calls" not in done.stdout


def test_tools_example_runs_and_its_gated_tool_is_approved_from_the_cli(
    dev_env: WorkflowEnvironment, sim: SimServer, tmp_path: Path
) -> None:
    """examples/tools.yaml: search_notes and word_count run, publish_summary waits at its gate until
    `harness approve` lets it run; it then publishes once."""
    spec = yaml.safe_load((ROOT / "examples" / "tools.yaml").read_text())
    spec["id"] = f"tools-demo-{uuid.uuid4().hex[:6]}"
    spec_file = tmp_path / "tools.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    env = cli_env(dev_env, sim, tmp_path)
    run = subprocess.Popen(
        [HARNESS, "run", str(spec_file), "--tools", CATALOG],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 25  # the example's gate times out after 30 s
        pending: list[str] = []
        while time.monotonic() < deadline and not pending:
            status = harness("status", spec["id"], "--json", env=env)
            if status.returncode == 0:
                pending = json.loads(status.stdout)["pending_gates"]
            time.sleep(0.3)
        assert pending == ["publish_summary-t3"], pending
        approved = harness("approve", spec["id"], "publish_summary-t3", env=env)
        assert approved.returncode == 0, approved.stderr
        out, errors = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, errors
    assert "stop reason  completed" in out
    assert "Used search_notes" in out and "Heartbeats" in out
    assert "3 tool calls" in out
    published = list((tmp_path / "published").iterdir())
    assert len(published) == 1
