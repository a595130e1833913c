"""Interrupt latency: how fast an ``interrupt`` signal cancels an in-flight streaming call, and how fast
it shows in the ``status`` query. Reports; never judges: exits 0 whatever the figures.

One sequential job on a dev server this script starts, one step streaming slowly from the simulator
(``tps=20``, 400 tokens: 20 s per call). Each round waits until the call is streaming, sends an urgent
interrupt, then polls: ``status`` until its interrupt count moves (visible), and ``transcript`` until
the cancelled turn is recorded (cancelled: the activity saw the cancel through its heartbeat and
returned its partial reply, and the workflow charged it). The interrupt message carries the slow
directive, so the step's re-run streams slowly again and the next round can interrupt it.

    python bench/interrupt.py [--interrupts 50]
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

from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.config import ProviderSettings  # noqa: E402
from activities.model_call import ModelCallActivities  # noqa: E402
from contracts import search_attributes as sa  # noqa: E402
from contracts.controls import AbortRequest, InterruptRequest  # noqa: E402
from contracts.jobs import JobProgress, JobResult, TurnRecord  # noqa: E402
from contracts.spec import parse_spec  # noqa: E402
from harness.sim import SimConfig, SimServer  # noqa: E402
from worker import build_worker  # noqa: E402

SLOW = "[[sim latency=0 tps=20 tokens=400]]"
POLL_S = 0.005


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


async def main(interrupts: int) -> None:
    with SimServer(SimConfig(port=0)) as sim:
        env = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            search_attributes=[sa.MODE, sa.STATUS, sa.STOP_REASON, sa.TOKENS, sa.COST_USD],
        )
        async with env:
            client = env.client
            gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url))
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            spec = parse_spec(
                {
                    "id": f"bench-interrupt-{uuid.uuid4().hex[:8]}",
                    "task": "Write about preemption.",
                    "agents": [{"name": "a", "model": "sim:writer", "max_output_tokens": 500}],
                    "steps": [{"id": "long", "agent": "a", "prompt": f"{{task}} {SLOW}"}],
                }
            )
            cancel_s: list[float] = []
            visible_s: list[float] = []
            async with build_worker(client, queue, activities=[gateway.model_call, gateway.resolve_models]):
                handle = await client.start_workflow(
                    "SequentialJob", spec, id=spec.id or "", task_queue=queue, result_type=JobResult
                )
                for index in range(interrupts):
                    while True:  # wait until the call is streaming
                        progress = await handle.query("status", result_type=JobProgress)
                        if progress.in_flight:
                            break
                        await asyncio.sleep(0.02)
                    await asyncio.sleep(0.3)  # a few tokens in
                    turns_before = len(await handle.query("transcript", result_type=list[TurnRecord]))
                    sent = time.perf_counter()
                    await handle.signal("interrupt", InterruptRequest(message=f"again {SLOW}", priority=0))
                    seen = None
                    while True:
                        now = time.perf_counter()
                        if seen is None:
                            progress = await handle.query("status", result_type=JobProgress)
                            if progress.interrupts > index:
                                seen = time.perf_counter() - sent
                        turns = await handle.query("transcript", result_type=list[TurnRecord])
                        if len(turns) > turns_before:
                            cancelled = time.perf_counter() - sent
                            break
                        if now - sent > 10:
                            raise RuntimeError("the interrupt did not cancel the call within 10 s")
                        await asyncio.sleep(POLL_S)
                    assert turns[-1].finish_reason == "cancelled", turns[-1].finish_reason
                    visible_s.append(seen if seen is not None else cancelled)
                    cancel_s.append(cancelled)
                    print(
                        f"interrupt {index + 1}/{interrupts}: "
                        f"visible {visible_s[-1]:.3f}s cancelled {cancelled:.3f}s"
                    )
                await handle.signal("abort", AbortRequest(reason="bench done"))
                await handle.result()
    print(f"interrupts: {interrupts}")
    print(f"cancel_p50_s: {statistics.median(cancel_s):.3f}")
    print(f"visible_p50_s: {statistics.median(visible_s):.3f}")
    print(f"cancel_p99_s: {percentile(cancel_s, 0.99):.3f}")
    print(f"visible_p99_s: {percentile(visible_s, 0.99):.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interrupts", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.interrupts))
