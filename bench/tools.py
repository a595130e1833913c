"""Cost of harness's tool-call path over a bare Temporal activity, and how fast a tool loop stops.

1. ``tool_overhead_ratio``: per tool call, harness's path (``Tools.run_round`` in a job workflow:
   allow-list, argument validation, budget reserve/settle, the ``harness.tool_call`` activity with
   heartbeat and result cap, the transcript record) against a bare workflow calling a bare activity
   that runs the same Python function (``word_count`` of examples/tools_research.py), on the same dev
   server. Each side runs N calls and 0 calls; the per-call time is (T(N) - T(0)) / N, so the job's
   start (listing its tools, resolving models) is not counted as tool-call cost. Runs alternate; the
   figure is the ratio of medians.
2. ``tool_livelock_rounds``: a job on sim:tool-loop (the same call with the same arguments for ever,
   getting the same result): tool rounds from the loop's start to the ``livelock`` stop.

Reports; never judges: exits 0 whatever the figures.

    python bench/tools.py [--calls 20] [--repeats 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _tool_workflow import BareTool, ToolRounds  # noqa: E402
from temporalio import activity  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from activities.config import ProviderSettings  # noqa: E402
from activities.model_call import ModelCallActivities  # noqa: E402
from activities.tool_catalog import load_tool_catalog  # noqa: E402
from activities.tools import ToolActivities  # noqa: E402
from contracts import search_attributes as sa  # noqa: E402
from contracts.jobs import JobResult  # noqa: E402
from contracts.spec import parse_spec  # noqa: E402
from contracts.state import JobInput  # noqa: E402
from examples.tools_research import word_count  # noqa: E402
from harness.sim import SimConfig, SimServer  # noqa: E402
from worker import build_worker, workflow_runner  # noqa: E402


@activity.defn(name="bench.bare_tool")
async def bare_tool(text: str) -> int:
    """The bare baseline's activity: the same function, nothing else."""
    return int(word_count(text))


def spec(calls: int, model: str = "sim:echo", **agent: object) -> object:
    return parse_spec(
        {
            "id": f"bench-tools-{uuid.uuid4().hex[:8]}",
            "task": str(calls),
            "agents": [{"name": "a", "model": model, "tools": ["word_count"], **agent}],
            "steps": [{"id": "s", "agent": "a", "prompt": "{task}"}],
        }
    )


async def timed(run: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await run()
    return time.perf_counter() - start


async def main(calls: int, repeats: int) -> None:
    catalog_dir = Path(tempfile.mkdtemp(prefix="bench-tools-"))
    catalog = catalog_dir / "tools.yaml"
    catalog.write_text("python: [examples.tools_research]\n")
    with SimServer(SimConfig(port=0)) as sim:
        env = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            search_attributes=[sa.MODE, sa.STATUS, sa.STOP_REASON, sa.TOKENS, sa.COST_USD],
        )
        async with env:
            client = env.client
            gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url))
            tools = ToolActivities(load_tool_catalog(catalog))
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            harness_worker = build_worker(
                client,
                queue,
                activities=[gateway.model_call, gateway.resolve_models, tools.list_tools, tools.tool_call],
            )
            # The bench's own job workflow runs on a plain worker with harness's sandbox settings.
            rounds_worker = Worker(
                client,
                task_queue=queue + "-rounds",
                workflows=[ToolRounds],
                activities=[gateway.resolve_models, tools.list_tools, tools.tool_call],
                workflow_runner=workflow_runner(),
            )
            bare_worker = Worker(
                client, task_queue=queue + "-bare", workflows=[BareTool], activities=[bare_tool]
            )
            try:
                async with harness_worker, rounds_worker, bare_worker:

                    def harness_run(n: int) -> Callable[[], Awaitable[object]]:
                        job = spec(n)
                        return lambda: client.execute_workflow(
                            "BenchToolRounds",
                            JobInput(spec=job),  # type: ignore[arg-type]
                            id=job.id,  # type: ignore[attr-defined]
                            task_queue=queue + "-rounds",
                            result_type=int,
                        )

                    def bare_run(n: int) -> Callable[[], Awaitable[object]]:
                        return lambda: client.execute_workflow(
                            "BenchBareTool", n, id=f"bare-{uuid.uuid4().hex[:8]}", task_queue=queue + "-bare"
                        )

                    for warm in (harness_run(2), bare_run(2)):  # sandbox imports, connections
                        await warm()
                    per_call: dict[str, list[float]] = {"harness": [], "bare": []}
                    for index in range(repeats):
                        sides = [("harness", harness_run), ("bare", bare_run)]
                        for name, make in sides if index % 2 == 0 else sides[::-1]:
                            full, empty = await timed(make(calls)), await timed(make(0))
                            per_call[name].append((full - empty) / calls)
                        h, b = per_call["harness"][-1], per_call["bare"][-1]
                        said = f"harness {h * 1000:.1f} ms/call, bare {b * 1000:.1f} ms/call"
                        print(f"repeat {index + 1}/{repeats}: {said}")

                    loop = spec(0, model="sim:tool-loop", max_tool_rounds=50)
                    result: JobResult = await client.execute_workflow(
                        "SequentialJob",
                        loop,
                        id=loop.id,  # type: ignore[attr-defined]
                        task_queue=queue,
                        result_type=JobResult,
                    )
            finally:
                await tools.aclose()
                await gateway.aclose()
    h, b = statistics.median(per_call["harness"]), statistics.median(per_call["bare"])
    evidence = result.evidence.get("tool_livelock", {})
    print(f"calls per run: {calls}, repeats: {repeats}")
    print(f"harness median: {h * 1000:.2f} ms/call; bare median: {b * 1000:.2f} ms/call")
    print(f"livelock job: stop reason {result.stop_reason.value}: {result.explanation}")
    print(f"tool_overhead_ratio: {h / b:.3f}")
    print(f"tool_livelock_rounds: {evidence.get('rounds', 'n/a')}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.repeats))
