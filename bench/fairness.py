"""Fairness across tenants, a provider's rate limit held cluster-wide, and draining workers.

All on a dev server of the bench's own (fairness on, one partition per task queue, as `harness
server` starts it) and the model simulator:

- tenant-share: 60 one-call jobs of tenant ``big`` (weight 3) and 20 of ``small`` (weight 1) are
  queued before one worker with one activity slot starts. ``tenant_share_error`` is |big's share of
  the first half of the jobs to end - 0.75|.
- token-share: two tenants of equal weight run four 10-call jobs each on one model-call slot; the
  heavy tenant's replies are four times the light one's (400 and 100 tokens, both streamed in
  0.2 s). ``token_share_error`` is |the heavy tenant's share of the tokens served while both had
  calls waiting - 0.5| with ``HARNESS_TOKEN_FAIRNESS`` on; ``token_share_by_calls`` is that share
  with it off (Temporal's fairness alone, which counts calls), measured in the same run.
- rate-limit: ``--burst`` one-call jobs started at once against the simulator limited to ``--rps``
  in the catalog. ``rate_limit_max_rps_ratio`` is the most requests the simulator saw in any 5 s,
  per second, over the limit (at most 1.0 is the target; the queue runs at 5/6 of the limit so
  Temporal's one-second start-up burst fits).
- drain: 10 two-step jobs on two worker processes (``python worker.py``); SIGTERM to one while calls
  stream, a third starts, SIGTERM to the second. ``drain_lost_calls`` counts jobs that did not end,
  calls the simulator completed more often than the jobs made them (paid twice) and calls it cut.

Reports; never judges: exits 0 whatever the figures.

    python bench/fairness.py [--burst 200] [--rps 5]
    python bench/fairness.py --quick      # a 60-job burst
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import kill, sim_tally, start_dev_server, start_worker  # noqa: E402
from temporalio.client import Client, WorkflowHandle  # noqa: E402

from activities.catalog import ModelCatalog, load_catalog  # noqa: E402
from activities.config import ProviderSettings  # noqa: E402
from activities.fairness import FairnessActivities  # noqa: E402
from activities.model_call import ModelCallActivities  # noqa: E402
from contracts.jobs import JobResult, StopReason, TurnRecord  # noqa: E402
from contracts.names import fairness_workflow_id  # noqa: E402
from contracts.spec import JobSpec, parse_spec  # noqa: E402
from harness.client import start_job  # noqa: E402
from harness.sim import SimConfig, SimServer  # noqa: E402
from worker import build_worker, connect  # noqa: E402


def job(tenant: str | None, weight: float | None = None, steps: int = 1, reply: str = "") -> JobSpec:
    """A job of ``tenant`` with ``steps`` calls in a row on sim:echo (``reply``: a directive)."""
    data: dict[str, Any] = {
        "id": f"{tenant or 'job'}-{uuid.uuid4().hex[:8]}",
        "task": "Say hello.",
        "agents": [{"name": "a", "model": "sim:echo", "max_output_tokens": 500}],
        "steps": [
            {"id": f"s{n}", "agent": "a", "prompt": f"Part {n}: {{task}} {reply}"} for n in range(steps)
        ],
    }
    if tenant is not None:
        data["tenant"] = tenant
    if weight is not None:
        data["tenant_weight"] = weight
    return parse_spec(data)


async def close_order(handles: list[WorkflowHandle[Any, Any]]) -> list[str]:
    closed = {handle.id: (await handle.describe()).close_time for handle in handles}
    return sorted(closed, key=lambda job_id: closed[job_id] or 0)


async def tenant_share(client: Client, gateway: ModelCallActivities) -> float:
    """Big's share (weight 3 against 1) of the first half of the jobs to end."""
    queue = f"bench-tenants-{uuid.uuid4().hex[:6]}"
    specs = [job("big", 3) for _ in range(60)] + [job("small", 1) for _ in range(20)]
    handles = [await start_job(client, spec, queue=queue) for spec in specs]
    async with build_worker(
        client,
        queue,
        activities=[gateway.model_call, gateway.resolve_models],
        max_concurrent_activities=1,
        max_concurrent_workflow_tasks=1,
        max_cached_workflows=0,
    ):
        await asyncio.gather(*(handle.result() for handle in handles))
    first_half = (await close_order(handles))[:40]
    return sum(job_id.startswith("big") for job_id in first_half) / 40


async def token_share(client: Client, sim: SimServer, by_tokens: bool) -> tuple[float, dict[str, float]]:
    """The heavy tenant's token share while both tenants had calls waiting, and the weights written."""
    gateway = ModelCallActivities(
        ProviderSettings(sim_url=sim.url), token_fairness=by_tokens, receipts=None, role_queues=True
    )
    fairness = FairnessActivities(client)
    queue = f"bench-tokens-{uuid.uuid4().hex[:6]}"
    specs = [job("heavy", steps=10, reply="[[sim latency=0 tps=2000 tokens=400]]") for _ in range(4)]
    specs += [job("light", steps=10, reply="[[sim latency=0 tps=500 tokens=100]]") for _ in range(4)]
    handles = [await start_job(client, spec, queue=queue) for spec in specs]
    activities = [gateway.model_call, gateway.resolve_models, fairness.set_fairness_weights]
    weights: dict[str, float] = {}
    try:
        async with build_worker(client, queue, activities=activities, max_concurrent_activities=1):
            await asyncio.gather(*(handle.result() for handle in handles))
            served = [
                (turn.ended_at, handle.id.split("-")[0], turn.usage.total_tokens)
                for handle in handles
                for turn in await handle.query("transcript", result_type=list[TurnRecord])
            ]
            if by_tokens:
                fair = client.get_workflow_handle(fairness_workflow_id(queue))
                state = await fair.query("state")
                weights = next(iter(state.get("written", {}).values()), {})
                await fair.terminate()
    finally:
        await gateway.aclose()
    turns = sorted(served)
    last = {tenant: max(i for i, t in enumerate(turns) if t[1] == tenant) for tenant in ("heavy", "light")}
    contested = turns[: min(last.values()) + 1]
    tokens = {tenant: sum(t[2] for t in contested if t[1] == tenant) for tenant in ("heavy", "light")}
    return tokens["heavy"] / (tokens["heavy"] + tokens["light"]), weights


async def rate_limit(client: Client, sim: SimServer, burst: int, rps: float) -> tuple[float, int, float]:
    """Busiest 5 s at the simulator over the limit, jobs ended, and the burst's wall time."""
    reset(sim)
    catalog = load_catalog().merged(ModelCatalog.from_yaml(f"providers: {{sim: {{rps: {rps}}}}}"))
    gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url), catalog=catalog, receipts=None)
    queue = f"bench-rps-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    try:
        async with build_worker(client, queue, activities=[gateway.model_call, gateway.resolve_models]):
            handles = [await start_job(client, job(None), queue=queue) for _ in range(burst)]
            results: list[JobResult] = await asyncio.gather(*(handle.result() for handle in handles))
    finally:
        await gateway.aclose()
    tally = sim_tally(sim)
    ended = sum(result.stop_reason is StopReason.completed for result in results)
    return tally["busiest"]["5"] / 5 / rps, ended, time.monotonic() - started


def reset(sim: SimServer) -> None:
    """Reset the simulator's tally (and its faults)."""
    request = urllib.request.Request(
        f"{sim.url}/_sim/reset", data=b"{}", headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


async def exited(process: subprocess.Popen[bytes], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return True
        await asyncio.sleep(0.1)
    return False


async def drain(client: Client, address: str, sim: SimServer, tmp: Path, log: IO[bytes]) -> int:
    """Jobs lost, calls paid twice and calls cut in a SIGTERM roll of two worker processes."""
    reset(sim)
    queue = f"bench-drain-{uuid.uuid4().hex[:6]}"
    extra = {"HARNESS_RECEIPTS_DIR": str(tmp / "receipts-drain"), "HARNESS_DRAIN_TIMEOUT_S": "30"}
    first = start_worker(address, queue, sim, log, **extra)
    second = start_worker(address, queue, sim, log, **extra)
    third = None
    reply = "[[sim latency=0 tps=20 tokens=40]]"
    try:
        handles = [await start_job(client, job(None, steps=2, reply=reply), queue=queue) for _ in range(10)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            total = sim_tally(sim)["total"]
            if total["requests"] - total["completed"] >= 4:
                break
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGTERM)
        drained_first = await exited(first, 45)
        third = start_worker(address, queue, sim, log, **extra)
        second.send_signal(signal.SIGTERM)
        drained_second = await exited(second, 45)
        print(f"drain: first worker exited {drained_first}, second {drained_second}", flush=True)
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), 180)
    finally:
        for process in (first, second, third):
            kill(process)
    total = sim_tally(sim)["total"]
    lost = sum(result.stop_reason is not StopReason.completed for result in results)
    calls = sum(result.ledger.calls for result in results)
    paid_twice = max(0, total["completed"] - calls)
    print(
        f"drain: {len(results) - lost}/{len(results)} jobs ended, {calls} calls charged, simulator "
        f"{total['completed']} completed, {total['incomplete']} cut",
        flush=True,
    )
    return lost + paid_twice + total["incomplete"]


async def main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-fairness-") as where:
        tmp = Path(where)
        with (
            SimServer(SimConfig(port=0)) as sim,
            start_dev_server(tmp / "temporal") as server,
            (tmp / "workers.log").open("ab") as log,
        ):
            client = await connect(server.address)
            gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url), receipts=None)
            try:
                big = await tenant_share(client, gateway)
            finally:
                await gateway.aclose()
            elapsed = time.monotonic() - started
            print(f"tenant-share: big (weight 3) had {big:.3f} of the first half ({elapsed:.0f}s)")
            by_tokens, weights = await token_share(client, sim, by_tokens=True)
            by_calls, _ = await token_share(client, sim, by_tokens=False)
            print(
                f"token-share: heavy tenant {by_tokens:.3f} of the tokens with token fairness (weights "
                f"{ {k: round(v, 2) for k, v in weights.items()} }), {by_calls:.3f} by calls alone "
                f"({time.monotonic() - started:.0f}s)"
            )
            ratio, ended, took = await rate_limit(client, sim, args.burst, args.rps)
            elapsed = time.monotonic() - started
            print(
                f"rate-limit: {ended}/{args.burst} jobs ended in {took:.0f}s; busiest 5 s at "
                f"{ratio * args.rps:.2f} rps against a limit of {args.rps:g} ({elapsed:.0f}s)"
            )
            lost = await drain(client, server.address, sim, tmp, log)
    print(f"wall time: {time.monotonic() - started:.0f}s")
    print(f"tenant_share_error: {abs(big - 0.75):.3f}")
    print(f"token_share_error: {abs(by_tokens - 0.5):.3f}")
    print(f"token_share_by_calls: {by_calls:.3f}")
    print(f"rate_limit_max_rps_ratio: {ratio:.3f}")
    print(f"drain_lost_calls: {lost}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=200, help="Jobs of the rate-limit burst.")
    parser.add_argument("--rps", type=float, default=5.0, help="The simulator's rate limit.")
    parser.add_argument("--quick", action="store_true", help="A 60-job burst.")
    args = parser.parse_args()
    if args.quick:
        args.burst = 60
    asyncio.run(main(args))
