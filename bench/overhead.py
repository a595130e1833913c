"""Overhead of harness over a bare Temporal workflow, measured side by side in one run.

Both run N turns against the same zero-latency simulated model, on the same dev server, through the
same OpenAI SDK call: harness's SequentialJob (ledger, budget checks, search attributes, heartbeats,
transcript) against a bare workflow that runs one plain activity per turn. Runs alternate, and the
figure is the ratio of medians. Reports; never judges: exits 0 whatever the figure.

    python bench/overhead.py [--turns 20] [--repeats 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from openai import AsyncOpenAI  # noqa: E402
from temporalio import activity  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from activities.config import ProviderSettings  # noqa: E402
from activities.model_call import ModelCallActivities  # noqa: E402
from contracts import search_attributes as sa  # noqa: E402
from contracts.jobs import JobResult  # noqa: E402
from harness.sim import SimConfig, SimServer  # noqa: E402
from worker import build_worker  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bare_workflow import BareChain  # noqa: E402
from _common import echo_chain  # noqa: E402


class BareCall:
    """The bare baseline's activity: the same SDK call, nothing else."""

    def __init__(self, base_url: str) -> None:
        self.client = AsyncOpenAI(api_key="sim", base_url=f"{base_url}/v1", max_retries=0)

    @activity.defn(name="bench.bare_call")
    async def call(self, prompt: str) -> str:
        reply = await self.client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": prompt}], max_tokens=64
        )
        return reply.choices[0].message.content or ""


async def main(turns: int, repeats: int) -> None:
    with SimServer(SimConfig(port=0)) as sim:
        env = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            search_attributes=[sa.MODE, sa.STATUS, sa.STOP_REASON, sa.TOKENS, sa.COST_USD],
        )
        async with env:
            client = env.client
            gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url))
            bare = BareCall(sim.url)
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            worker = build_worker(
                client, queue, activities=[gateway.model_call, gateway.resolve_models, bare.call]
            )
            # The bare chain gets its own plain worker in the same process, on the same server.
            bare_worker = Worker(
                client, task_queue=queue + "-bare", workflows=[BareChain], activities=[bare.call]
            )
            async with worker, bare_worker:

                async def run_harness() -> float:
                    spec = echo_chain(turns)
                    start = time.perf_counter()
                    await client.execute_workflow(
                        "SequentialJob",
                        spec,
                        id=spec.id,
                        task_queue=queue,
                        result_type=JobResult,  # type: ignore[attr-defined]
                    )
                    return time.perf_counter() - start

                async def run_bare() -> float:
                    start = time.perf_counter()
                    await client.execute_workflow(
                        "BenchBareChain", turns, id=f"bare-{uuid.uuid4().hex[:8]}", task_queue=queue + "-bare"
                    )
                    return time.perf_counter() - start

                await run_harness()  # warm both paths (sandbox imports, connections)
                await run_bare()
                harness_times: list[float] = []
                bare_times: list[float] = []
                for index in range(repeats):
                    first, second = (run_harness, run_bare) if index % 2 == 0 else (run_bare, run_harness)
                    for runner in (first, second):
                        elapsed = await runner()
                        (harness_times if runner is run_harness else bare_times).append(elapsed)
                    last = f"harness {harness_times[-1]:.3f}s bare {bare_times[-1]:.3f}s"
                    print(f"repeat {index + 1}/{repeats}: {last}")
    h, b = statistics.median(harness_times), statistics.median(bare_times)
    print(f"turns per job: {turns}, repeats: {repeats}")
    print(f"harness median: {h:.3f}s ({h / turns * 1000:.1f} ms/turn)")
    print(f"bare median: {b:.3f}s ({b / turns * 1000:.1f} ms/turn)")
    print(f"overhead_ratio: {h / b:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    asyncio.run(main(args.turns, args.repeats))
