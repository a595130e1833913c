"""Workers as a fleet: SIGTERM drains a worker process (no new tasks, running calls finish), the
others and a newcomer carry the jobs on, and no call is paid twice (real processes, real dev server)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from contracts.jobs import StopReason
from contracts.spec import JobSpec, parse_spec
from harness.client import start_job
from harness.sim import SimServer
from tests.helpers import sim_call, start_worker, stop

pytestmark = pytest.mark.e2e


def two_steps(index: int) -> JobSpec:
    slow = "[[sim latency=0 tps=20 tokens=40]]"  # two seconds a call
    return parse_spec(
        {
            "id": f"drain-{index:02d}-{uuid.uuid4().hex[:6]}",
            "task": f"Note {index} on draining workers.",
            "agents": [{"name": "a", "model": "sim:echo", "max_output_tokens": 60}],
            "steps": [
                {"id": "one", "agent": "a", "prompt": f"{{task}} {slow}"},
                {"id": "two", "agent": "a", "prompt": f"Again: {{one}} {slow}"},
            ],
        }
    )


async def exited(process: subprocess.Popen[bytes], within: float) -> int | None:
    """The process's exit code once it ends, or None if it runs on past ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return process.returncode
        await asyncio.sleep(0.1)
    return None


async def test_sigterm_drains_a_worker_and_the_fleet_carries_the_jobs(
    dev_env: WorkflowEnvironment, sim: SimServer, receipts_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two worker processes run 10 two-step jobs; SIGTERM to the first while calls stream: it stops
    polling, lets its running calls finish and exits 0; a third starts, the second is sent SIGTERM
    too, and the third finishes every job. The simulator completed each of the 20 calls once and
    cut none, and the jobs' ledgers equal its tally to the token."""
    monkeypatch.setenv("HARNESS_DRAIN_TIMEOUT_S", "30")
    sim_call(sim, "/_sim/reset", {})
    queue = f"drain-{uuid.uuid4().hex[:8]}"
    first, second = start_worker(dev_env, sim, queue), start_worker(dev_env, sim, queue)
    third = None
    try:
        handles = [await start_job(dev_env.client, two_steps(i), queue=queue) for i in range(10)]
        for _ in range(600):  # both workers are up and calls stream
            total = sim_call(sim, "/_sim/tally")["total"]
            if total["requests"] - total["completed"] >= 4:
                break
            await asyncio.sleep(0.05)
        first.send_signal(signal.SIGTERM)
        assert await exited(first, within=45) == 0
        third = start_worker(dev_env, sim, queue)
        second.send_signal(signal.SIGTERM)
        assert await exited(second, within=45) == 0
        results = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=120)
    finally:
        for process in (first, second, third):
            if process is not None:
                stop(process)
    assert all(r.stop_reason is StopReason.completed for r in results), [r.explanation for r in results]
    total = sim_call(sim, "/_sim/tally")["total"]
    assert (total["completed"], total["incomplete"]) == (20, 0), total
    assert sum(r.ledger.calls for r in results) == 20
    assert sum(r.ledger.usage.input_tokens for r in results) == total["input_tokens"]
    assert sum(r.ledger.usage.output_tokens for r in results) == total["output_tokens"]
    assert not any(r.ledger.usage.estimated for r in results)
