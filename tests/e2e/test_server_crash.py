"""The Temporal server SIGKILLed mid-job and restarted on the same data directory: calls that
finished while it was down are answered from their receipts, never paid twice, never under-charged.

The test starts its own dev server (SQLite under ``tmp_path``) and stops it by its PID.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from pathlib import Path

import pytest

from contracts.jobs import JobResult, StopReason
from contracts.spec import parse_spec
from harness.devserver import DevServer
from harness.sim import SimServer
from tests.helpers import (
    connect,
    free_port,
    kill_server,
    sim_call,
    start_job,
    start_worker,
    stop,
    transcript_of,
)

pytestmark = pytest.mark.e2e

OUTAGE_S = 12.0


async def test_server_sigkill_mid_job_charges_every_call_once(
    sim: SimServer, tmp_path: Path, receipts_dir: Path
) -> None:
    """Three parallel calls stream while the server is SIGKILLed; they finish at the simulator while
    it is down; it restarts on the same data directory. The job completes, the simulator completed
    each call exactly once (a re-run attempt answered from its receipt) and the ledger is never
    below what the simulator served."""
    sim_call(sim, "/_sim/reset", {})
    data_dir, port = tmp_path / "temporal", free_port()
    queue = f"server-crash-{uuid.uuid4().hex[:8]}"
    slow = "[[sim latency=0 tps=20 tokens=60]]"
    spec = parse_spec(
        {
            "id": f"server-crash-{uuid.uuid4().hex[:8]}",
            "mode": "dag",
            "task": "t",
            "agents": [{"name": "a", "model": "sim:echo", "max_output_tokens": 120}],
            "steps": [
                {"id": "one", "agent": "a", "prompt": f"first {slow}"},
                {"id": "two", "agent": "a", "prompt": f"second {slow}"},
                {"id": "three", "agent": "a", "prompt": f"third {slow}"},
                {"id": "join", "agent": "a", "prompt": "join {input}", "depends_on": ["one", "two", "three"]},
            ],
        }
    )
    first = DevServer(data_dir=data_dir, port=port, headless=True)
    second: DevServer | None = None
    worker: subprocess.Popen[bytes] | None = None
    try:
        first.start()
        client = await connect(first)
        worker = start_worker(client, sim, queue)
        handle = await start_job(client, queue, spec)
        for _ in range(300):  # until the three parallel calls are streaming
            if sim_call(sim, "/_sim/tally")["total"]["requests"] >= 3:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        kill_server(first)
        # The streams finish at the simulator while the server is down (about 3 s each).
        for _ in range(300):
            if sim_call(sim, "/_sim/tally")["total"]["completed"] >= 3:
                break
            await asyncio.sleep(0.1)
        # Down for longer than the heartbeat timeout (10 s), as in the reported case (10-14 s): the
        # restarted server times the attempts out and runs them again; their completions are lost.
        await asyncio.sleep(OUTAGE_S)
        second = DevServer(data_dir=data_dir, port=port, headless=True)
        second.start()
        client = await connect(second)
        handle = client.get_workflow_handle(spec.id or "", result_type=JobResult)
        result = await asyncio.wait_for(handle.result(), timeout=120)
        turns = await transcript_of(handle)
    finally:
        if worker is not None:
            stop(worker)
        first.stop()
        if second is not None:
            second.stop()

    assert result.stop_reason is StopReason.completed, result.explanation
    assert sorted(turn.step or "" for turn in turns) == ["join", "one", "three", "two"]
    tally = sim_call(sim, "/_sim/tally")["total"]
    assert tally["completed"] == 4, tally  # no call served twice
    served = tally["input_tokens"] + tally["output_tokens"] + tally["incomplete_output_tokens"]
    assert result.ledger.usage.total_tokens >= served, (result.ledger.usage, tally)
