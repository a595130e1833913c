"""Record the histories the replay test replays: ``python -m tests.record_histories [--suffix S] NAME...``.

Runs one job per mode on the time-skipping server against the simulator and writes each history
as JSON under tests/histories/ (``NAME-S.json`` with a suffix). Keep the old histories when the
workflow code changes: record new ones beside them, so both shapes are replayed.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.config import ProviderSettings
from activities.model_call import ModelCallActivities
from activities.team_board import TeamBoardActivities
from activities.tool_catalog import load_tool_catalog
from activities.tools import ToolActivities
from contracts.jobs import JobResult
from harness.devserver import add_search_attributes
from harness.sim import SimConfig, SimServer
from harness.specfile import load_spec
from worker import build_worker
from workflows import WORKFLOW_FOR_MODE

ROOT = Path(__file__).parent.parent
OUT = Path(__file__).parent / "histories"


async def record(examples: list[Path], suffix: str = "") -> None:
    """Run each example and save its history."""
    with SimServer(SimConfig(port=0)) as sim:
        gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url))
        tools = ToolActivities(load_tool_catalog(ROOT / "examples" / "tools-catalog.yaml"))  # tools.yaml
        env = await WorkflowEnvironment.start_time_skipping(
            data_converter=pydantic_data_converter,
            test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        )
        async with env:
            await add_search_attributes(env.client, env.client.namespace)
            queue = f"record-{uuid.uuid4().hex[:8]}"
            async with build_worker(
                env.client,
                queue,
                activities=[
                    gateway.model_call,
                    gateway.resolve_models,
                    TeamBoardActivities(env.client).team_board,
                    tools.list_tools,
                    tools.tool_call,
                ],
            ):
                for example in examples:
                    spec = load_spec(example)
                    job_id = f"{example.stem}-{suffix}" if suffix else example.stem  # = the file stem
                    spec = spec.model_copy(update={"id": job_id})
                    handle = await env.client.start_workflow(
                        WORKFLOW_FOR_MODE[spec.mode], spec, id=job_id, task_queue=queue, result_type=JobResult
                    )
                    result: Any = await handle.result()
                    history = await handle.fetch_history()
                    OUT.mkdir(exist_ok=True)
                    (OUT / f"{job_id}.json").write_text(history.to_json())
                    print(f"{example.stem}: {result.stop_reason.value}, {len(history.events)} events")
        await tools.aclose()


if __name__ == "__main__":
    args = sys.argv[1:]
    suffix = ""
    if args[:1] == ["--suffix"]:
        suffix, args = args[1], args[2:]
    names = args or ["sequential"]
    asyncio.run(record([ROOT / "examples" / f"{name}.yaml" for name in names], suffix))
