"""Scheduling quality of two modes, on a dev server and simulator this script starts itself.

(a) Delegation makespan: a ``sim:planner`` primary plans 40 subtasks ("subtasks=40"), each runs as
a ``SubtaskJob`` child at most 8 at once. Every subtask's duration is known: its prompt carries the
job's task, whose ``[[sim latency=D]]`` directive makes each model call take D seconds. The child
phase (first child initiated to last child closed, from the parent's history) is compared with the
lower bound max(critical path, total work / 8) = max(D, 40 D / 8): ``makespan_ratio``.

(b) Fair share: three equal-weight agents with different reply lengths take turns in a
``fair_share`` group chat for 67 rounds (201 turns: a round is one turn per agent, so 200 exactly
is not a whole number of rounds); ``jain_index`` is Jain's index of their token totals.

Reports; never judges: exits 0 whatever the figures.

    python bench/modes.py [--subtasks 40] [--concurrency 8] [--duration 2.0] [--rounds 67]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from activities.config import ProviderSettings  # noqa: E402
from activities.model_call import ModelCallActivities  # noqa: E402
from contracts import search_attributes as sa  # noqa: E402
from contracts.jobs import JobResult  # noqa: E402
from contracts.spec import parse_spec  # noqa: E402
from harness.sim import SimConfig, SimServer  # noqa: E402
from policies.scheduling import jain_index  # noqa: E402
from worker import build_worker  # noqa: E402

CHILD_ENDS = {
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT,
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED,
}


async def delegation_makespan(
    client: Client, queue: str, subtasks: int, concurrency: int, duration: float
) -> float:
    """Run the delegation job; print its figures and return makespan / lower bound."""
    spec = parse_spec(
        {
            "id": f"bench-dlg-{uuid.uuid4().hex[:8]}",
            "mode": "delegation",
            "task": f"Write a report in parts. subtasks={subtasks} [[sim latency={duration}]]",
            "agents": [
                {"name": "lead", "model": "sim:planner", "max_output_tokens": 4000},
                {"name": "worker", "model": "sim:writer", "max_output_tokens": 64},
            ],
            "delegation": {"primary": "lead", "max_concurrency": concurrency, "max_rounds": 1},
        }
    )
    result: JobResult = await client.execute_workflow(
        "DelegationJob", spec, id=spec.id or "", task_queue=queue, result_type=JobResult
    )
    started: dict[int, datetime] = {}  # initiated event id -> when the parent asked for the child
    durations: list[float] = []
    ends: list[datetime] = []
    async for event in client.get_workflow_handle(spec.id or "").fetch_history_events():
        when = event.event_time.ToDatetime()
        if event.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            started[event.event_id] = when
        elif event.event_type in CHILD_ENDS:
            attributes = getattr(event, event.WhichOneof("attributes") or "")
            durations.append((when - started[attributes.initiated_event_id]).total_seconds())
            ends.append(when)
    makespan = (max(ends) - min(started.values())).total_seconds()
    bound = max(duration, subtasks * duration / concurrency)
    # The same bound over the children's measured durations (each child's own overhead included):
    # how close the scheduling itself comes, apart from what one child costs to run.
    measured = max(max(durations), sum(durations) / concurrency)
    done = len(result.outputs)
    print(f"delegation: stop {result.stop_reason.value}, {done} subtasks done, {len(started)} children")
    print(
        f"delegation: child phase {makespan:.3f}s, lower bound {bound:.3f}s (D={duration}s, N={concurrency})"
    )
    mean = sum(durations) / len(durations)
    print(f"delegation: mean child time {mean:.3f}s (overhead {mean - duration:.3f}s over D)")
    print(f"delegation: bound over measured child times {measured:.3f}s, ratio {makespan / measured:.3f}")
    return makespan / bound


async def fair_share_jain(client: Client, queue: str, rounds: int) -> float:
    """Run the fair-share chat; print the token totals and return Jain's index over them."""
    spec = parse_spec(
        {
            "id": f"bench-fair-{uuid.uuid4().hex[:8]}",
            "mode": "groupchat",
            "task": "Discuss how schedulers share a CPU, briefly.",
            "agents": [
                {"name": "long", "model": "sim:writer", "max_output_tokens": 60},
                {"name": "medium", "model": "sim:writer", "max_output_tokens": 30},
                {"name": "short", "model": "sim:writer", "max_output_tokens": 10},
            ],
            "chat": {"turn_policy": "fair_share"},
            "termination": {"max_rounds": rounds},
        }
    )
    result: JobResult = await client.execute_workflow(
        "GroupChatJob", spec, id=spec.id or "", task_queue=queue, result_type=JobResult
    )
    totals = {name: usage.total_tokens for name, usage in sorted(result.ledger.per_agent.items())}
    print(f"fair share: stop {result.stop_reason.value}, {result.turns} turns, tokens per agent {totals}")
    return jain_index(list(totals.values()))


async def main(subtasks: int, concurrency: int, duration: float, rounds: int) -> None:
    with SimServer(SimConfig(port=0)) as sim:
        env = await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter,
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            search_attributes=[sa.MODE, sa.STATUS, sa.STOP_REASON, sa.TOKENS, sa.COST_USD],
        )
        async with env:
            gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url))
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            worker = build_worker(env.client, queue, activities=[gateway.model_call, gateway.resolve_models])
            async with worker:
                ratio = await delegation_makespan(env.client, queue, subtasks, concurrency, duration)
                jain = await fair_share_jain(env.client, queue, rounds)
            await gateway.aclose()
    print(f"makespan_ratio: {ratio:.3f}")
    print(f"jain_index: {jain:.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subtasks", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=2.0, help="Seconds per subtask.")
    parser.add_argument("--rounds", type=int, default=67, help="Chat rounds (3 turns each).")
    args = parser.parse_args()
    asyncio.run(main(args.subtasks, args.concurrency, args.duration, args.rounds))
