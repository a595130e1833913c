"""Throughput under load: 16 concurrent jobs of 25 turns, harness against a bare Temporal chain.

Both sides run on one dev server, through workers in this process, against one zero-latency
simulator, and stream the same replies through the same OpenAI SDK call: harness's SequentialJob
(ledger, budget checks, search attributes, heartbeats, receipts, transcript) against a bare workflow
of one plain streaming activity per turn. Each side starts its jobs at once and is timed until the
last ends; the sides alternate, and the figure is harness's turns per second over the bare chain's
(ratio of medians). Also prints the process's CPU seconds per turn for each side. Reports; never
judges: exits 0 whatever the figure.

    python bench/throughput.py [--jobs 16] [--turns 25] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from openai import AsyncOpenAI  # noqa: E402
from temporalio import activity  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from activities.codec import data_converter  # noqa: E402
from activities.config import ProviderSettings  # noqa: E402
from activities.model_call import ModelCallActivities  # noqa: E402
from contracts.jobs import JobResult  # noqa: E402
from harness.sim import SimConfig, SimServer  # noqa: E402
from worker import build_worker  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bare_workflow import BareChain  # noqa: E402
from _common import echo_chain, start_dev_server  # noqa: E402

MAX_TOKENS = 64


class BareStreamingCall:
    """The bare side's activity: the same streamed SDK call, its text joined, nothing else."""

    def __init__(self, base_url: str) -> None:
        self.client = AsyncOpenAI(api_key="sim", base_url=f"{base_url}/v1", max_retries=0)

    @activity.defn(name="bench.bare_call")
    async def call(self, prompt: str) -> str:
        stream = await self.client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": prompt}],
            max_tokens=MAX_TOKENS,
            stream=True,
            stream_options={"include_usage": True},
        )
        parts = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
        return "".join(parts)


async def main(jobs: int, turns: int, repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, SimServer(SimConfig(port=0)) as sim:
        server = start_dev_server(Path(tmp) / "temporal")
        try:
            client = await Client.connect(server.address, data_converter=data_converter())
            gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url))
            bare = BareStreamingCall(sim.url)
            queue = f"bench-tp-{uuid.uuid4().hex[:8]}"
            harness_worker = build_worker(
                client, queue, activities=[gateway.model_call, gateway.resolve_models]
            )
            bare_worker = Worker(
                client, task_queue=queue + "-bare", workflows=[BareChain], activities=[bare.call]
            )
            async with harness_worker, bare_worker:

                async def run_harness() -> float:
                    specs = [echo_chain(turns, "bench-tp") for _ in range(jobs)]
                    start = time.perf_counter()
                    results = await asyncio.gather(
                        *(
                            client.execute_workflow(
                                "SequentialJob",
                                spec,
                                id=spec.id or "",
                                task_queue=queue,
                                result_type=JobResult,
                            )
                            for spec in specs
                        )
                    )
                    assert all(result.turns == turns for result in results)
                    return time.perf_counter() - start

                async def run_bare() -> float:
                    start = time.perf_counter()
                    await asyncio.gather(
                        *(
                            client.execute_workflow(
                                "BenchBareChain",
                                turns,
                                id=f"bare-{uuid.uuid4().hex[:8]}",
                                task_queue=queue + "-bare",
                            )
                            for _ in range(jobs)
                        )
                    )
                    return time.perf_counter() - start

                await run_harness()  # warm both paths
                await run_bare()
                walls: dict[str, list[float]] = {"harness": [], "bare": []}
                cpu: dict[str, list[float]] = {"harness": [], "bare": []}
                for index in range(repeats):
                    order = [("harness", run_harness), ("bare", run_bare)]
                    for name, runner in order if index % 2 == 0 else order[::-1]:
                        before = time.process_time()
                        walls[name].append(await runner())
                        cpu[name].append(time.process_time() - before)
                    print(
                        f"repeat {index + 1}/{repeats}: harness {walls['harness'][-1]:.2f}s "
                        f"bare {walls['bare'][-1]:.2f}s",
                        flush=True,
                    )
            await gateway.aclose()
        finally:
            server.stop()
    total = jobs * turns
    h, b = statistics.median(walls["harness"]), statistics.median(walls["bare"])
    for name, wall in (("harness", h), ("bare", b)):
        per_turn = statistics.median(cpu[name]) / total * 1000
        print(f"{name}: {total / wall:.1f} turns/s, worker-process CPU {per_turn:.1f} ms/turn")
    print(f"jobs: {jobs} at once, {turns} turns each, repeats: {repeats}")
    print(f"throughput_ratio: {b / h:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--turns", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.jobs, args.turns, args.repeats))
