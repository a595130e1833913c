"""Every `harness` command that talks to Temporal exits with its own code, never with a signal.

The Temporal SDK's Tokio threads can still be inside Python when a command returns; a process that
then finalizes the interpreter may die with SIGSEGV or SIGABRT after printing its output (see
harness.cli.main). The most exposed command is one whose last act is an RPC: through the old entry
point about one run in seven died that way, so 16 runs catch it nearly always (0.85**16 < 8%); the
real read commands, which print for a while after their last RPC, died far less often. The 200-run
loop over the real commands is bench/cli_exit.py.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.model_call import ModelCallActivities
from harness.client import start_job
from harness.sim import SimServer
from harness.specfile import load_spec
from tests.helpers import ROOT, make_worker

HARNESS = str(Path(sys.executable).parent / "harness")
RPC_LAST_RUNS = 16

# The real entry point, harness.cli.main, with one more command that returns right after an RPC.
RPC_LAST = """
import asyncio, sys
from harness import cli
from worker import connect

@cli.app.command("rpc-last")
def rpc_last(job_id: str) -> None:
    async def go() -> None:
        handle = (await connect()).get_workflow_handle(job_id)
        await handle.describe()
        await handle.result()
    asyncio.run(go())
    print("ok")

cli.main()
"""


@pytest.mark.e2e
@pytest.mark.timeout(300)
async def test_cli_commands_exit_zero_never_by_a_signal(
    dev_env: WorkflowEnvironment, sim: SimServer, gateway: ModelCallActivities
) -> None:
    """A command ending on an RPC, 16 times, and status, ledger, transcript and result (a worker
    answers the queries) all exit 0; a negative return code would be the signal that killed one."""
    async with make_worker(dev_env.client, gateway) as worker:
        handle = await start_job(
            dev_env.client, load_spec(ROOT / "examples/sequential.yaml"), worker.task_queue
        )
        await handle.result()
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
            "HARNESS_TASK_QUEUE": worker.task_queue,
            "COLUMNS": "200",
        }
        limit = asyncio.Semaphore(2)

        async def run(*argv: str) -> tuple[str, int, str]:
            async with limit:
                proc = await asyncio.create_subprocess_exec(
                    *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
                )
                out, err = await proc.communicate()
            assert proc.returncode is not None
            name = argv[-2]
            assert out, f"{name} printed nothing: {err.decode(errors='replace')[-500:]}"
            return name, proc.returncode, err.decode(errors="replace")[-300:]

        runs = [run(sys.executable, "-c", RPC_LAST, "rpc-last", handle.id) for _ in range(RPC_LAST_RUNS)]
        runs += [run(HARNESS, command, handle.id) for command in ("status", "ledger", "transcript", "result")]
        done = await asyncio.gather(*runs)
    failed = [(name, code, err) for name, code, err in done if code != 0]
    assert not failed, f"{len(failed)} of {len(done)} runs did not exit 0 (negative = signal): {failed}"
