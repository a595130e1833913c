"""Scheduling quality of two modes, on a dev server and simulator this script starts itself.

(a) Makespan of a delegation job of 40 subtasks of known, equal duration (every subtask's prompt
    carries the task's ``[[sim latency=L tps=0]]`` directive, so each model call takes L seconds),
    at concurrency 8, against the lower bound max(critical path, total work / 8) = max(L, 40 L / 8).
    The makespan runs from the first child workflow's start to the last one's close, as the server
    recorded them, so it includes every per-child cost (start, model resolution, scheduling).
(b) Jain's fairness index of the token shares of four equal-weight agents whose replies differ in
    length, over a 200-turn fair-share group chat (50 rounds of four turns).

Reports; never judges: exits 0 whatever the figures. The last two lines are the figures.

    python bench/modes.py [--latency 3.0] [--subtasks 40] [--concurrency 8] [--turns 200]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.model_call import ModelCallActivities  # noqa: E402
from harness import search_attributes as sa  # noqa: E402
from harness.config import ProviderSettings  # noqa: E402
from harness.contracts import JobResult  # noqa: E402
from harness.sim import SimConfig, SimServer  # noqa: E402
from harness.spec import JobSpec, parse_spec  # noqa: E402
from policies.scheduling import jain_index  # noqa: E402
from worker import build_worker  # noqa: E402


def delegation_spec(subtasks: int, concurrency: int, latency: float) -> JobSpec:
    """A planner that splits the task into ``subtasks`` parts, one worker, no review round."""
    return parse_spec(
        {
            "id": f"bench-del-{uuid.uuid4().hex[:8]}",
            "mode": "delegation",
            "task": f"Write a long guide in parts. subtasks={subtasks} [[sim latency={latency} tps=0]]",
            "agents": [
                {"name": "lead", "model": "sim:planner", "max_output_tokens": 4000},
                {"name": "worker", "model": "sim:echo", "max_output_tokens": 80},
            ],
            "delegation": {"primary": "lead", "max_concurrency": concurrency, "max_rounds": 1},
        }
    )


def chat_spec(turns: int) -> JobSpec:
    """Four equal-weight agents with replies of different lengths, fair share, no goal."""
    models = ["sim:writer", "sim:editor", "sim:echo", "sim:selector"]
    return parse_spec(
        {
            "id": f"bench-chat-{uuid.uuid4().hex[:8]}",
            "mode": "groupchat",
            "task": "Discuss how to schedule agent work fairly.",
            "agents": [
                {"name": f"agent{i}", "model": model, "max_output_tokens": 120, "weight": 1.0}
                for i, model in enumerate(models)
            ],
            "chat": {"turn_policy": "fair_share"},
            "termination": {"max_rounds": turns // len(models)},
        }
    )


async def makespan(env: WorkflowEnvironment, queue: str, args: argparse.Namespace) -> float:
    """Run the delegation job; return its makespan over the lower bound."""
    spec = delegation_spec(args.subtasks, args.concurrency, args.latency)
    result: JobResult = await env.client.execute_workflow(
        "DelegationJob", spec, id=spec.id or "", task_queue=queue, result_type=JobResult
    )
    starts, ends = [], []
    for subtask in result.outputs:
        described = await env.client.get_workflow_handle(f"{spec.id}/{subtask}-r1").describe()
        assert described.close_time is not None
        starts.append(described.start_time)
        ends.append(described.close_time)
    span = (max(ends) - min(starts)).total_seconds()
    work = args.subtasks * args.latency
    bound = max(args.latency, work / args.concurrency)
    print(f"(a) delegation: {len(result.outputs)} subtasks of {args.latency:.1f}s, concurrency {args.concurrency}")
    print(f"    stop reason {result.stop_reason.value}; makespan {span:.2f}s; lower bound {bound:.2f}s")
    return span / bound


async def fairness(env: WorkflowEnvironment, queue: str, turns: int) -> float:
    """Run the fair-share chat; return Jain's index of the agents' token totals."""
    spec = chat_spec(turns)
    result: JobResult = await env.client.execute_workflow(
        "GroupChatJob", spec, id=spec.id or "", task_queue=queue, result_type=JobResult
    )
    tokens = {agent: usage.total_tokens for agent, usage in sorted(result.ledger.per_agent.items())}
    print(f"(b) fair-share chat: {result.turns} turns, stop reason {result.stop_reason.value}")
    print(f"    tokens per agent: {tokens}")
    return jain_index([float(value) for value in tokens.values()])


async def main(args: argparse.Namespace) -> None:
    with SimServer(SimConfig(port=0)) as sim:
        env = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            search_attributes=[sa.MODE, sa.STATUS, sa.STOP_REASON, sa.TOKENS, sa.COST_USD],
        )
        async with env:
            gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url))
            queue = f"bench-modes-{uuid.uuid4().hex[:8]}"
            activities: list[Any] = [gateway.model_call, gateway.resolve_models]
            async with build_worker(env.client, queue, activities=activities, max_concurrent_activities=64):
                ratio = await makespan(env, queue, args)
                jain = await fairness(env, queue, args.turns)
    print(f"makespan_ratio: {ratio:.3f}")
    print(f"jain_index: {jain:.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--latency", type=float, default=3.0, help="seconds per subtask")
    parser.add_argument("--subtasks", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--turns", type=int, default=200)
    asyncio.run(main(parser.parse_args()))
