"""Does every `harness` command exit cleanly? Runs the CLI N times against a real dev server.

Starts the model simulator and a headless dev server (harness.devserver, what `harness server` runs)
on a free port, runs one job (examples/sequential.yaml) with an in-process worker that stays up to
answer queries, then runs, each as a real process and in turn: the read commands (status, ledger,
transcript, result, with and without --json), --help, `run --help`, a refused spec, and `rpc-last`,
a command added to the real entry point (harness.cli.main) that returns right after an RPC. It
counts the exit codes. A negative code is a signal (-11 SIGSEGV, -6 SIGABRT): the process died after
its work, in interpreter shutdown. Exits 1 if any run ended with a signal or an unexpected code.

`rpc-last` is there because it is the most exposed case: the SDK thread that delivers an RPC's
result may still be in Python when the command returns, and the real commands print for a while
after their last RPC, which mostly lets that thread finish before the interpreter finalizes.

    python bench/cli_exit.py [--runs 200] [--jobs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from activities.config import ProviderSettings  # noqa: E402
from activities.model_call import ModelCallActivities  # noqa: E402
from harness.client import start_job  # noqa: E402
from harness.devserver import DevServer  # noqa: E402
from harness.sim import SimConfig, SimServer  # noqa: E402
from harness.specfile import load_spec  # noqa: E402
from worker import build_worker, connect  # noqa: E402

HARNESS = str(Path(sys.executable).parent / "harness")
BAD_SPEC = "task: t\nagents: [{name: a, model: 'sim:writer'}]\nsteps: [{id: s, agent: b}]\n"
# The real entry point with one more command, which returns right after an RPC.
RPC_LAST = """
import asyncio
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


def commands(job_id: str, bad_spec: Path) -> list[tuple[list[str], int]]:
    """Each command with the exit code it should end with."""
    return [
        (["status", job_id], 0),
        (["ledger", job_id], 0),
        (["transcript", job_id], 0),
        (["result", job_id], 0),
        (["status", job_id, "--json"], 0),
        (["ledger", job_id, "--json"], 0),
        (["--help"], 0),
        (["run", "--help"], 0),
        (["run", str(bad_spec)], 2),
        (["rpc-last", job_id], 0),
    ]


def describe(code: int) -> str:
    if code < 0:
        try:
            return f"{code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"{code} (signal {-code})"
    return str(code)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def run_one(args: list[str], env: dict[str, str]) -> tuple[int, bytes, float]:
    start = time.perf_counter()
    argv = [sys.executable, "-c", RPC_LAST, *args] if args[0] == "rpc-last" else [HARNESS, *args]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, stderr, time.perf_counter() - start


async def loop(runs: int, jobs: int, address: str, queue: str, job_id: str, bad_spec: Path) -> int:
    env = {**os.environ, "TEMPORAL_ADDRESS": address, "HARNESS_TASK_QUEUE": queue, "COLUMNS": "200"}
    plan = commands(job_id, bad_spec)
    codes: collections.Counter[tuple[str, int]] = collections.Counter()
    bad: list[str] = []
    seconds: list[float] = []
    limit = asyncio.Semaphore(jobs)

    async def one(index: int) -> None:
        args, expected = plan[index % len(plan)]
        async with limit:
            code, stderr, elapsed = await run_one(args, env)
        seconds.append(elapsed)
        name = " ".join(a if a != job_id else "ID" for a in args)
        codes[(name, code)] += 1
        if code != expected:
            tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
            bad.append(f"run {index + 1}: harness {name} -> {describe(code)} (expected {expected}): {tail}")
            print(bad[-1], flush=True)
        if (index + 1) % 20 == 0:
            print(f"{index + 1}/{runs} runs", flush=True)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(runs)))
    total = time.perf_counter() - start
    print(f"\n{runs} runs in {total:.1f}s ({sum(seconds) / len(seconds):.2f}s per run, {jobs} at a time)")
    for (name, code), count in sorted(codes.items()):
        print(f"  harness {name:<24} exit {describe(code):<14} x{count}")
    signalled = sum(count for (_, code), count in codes.items() if code < 0)
    print(f"signals: {signalled}; unexpected exit codes: {len(bad) - signalled}")
    return 1 if bad else 0


async def main(runs: int, jobs: int) -> int:
    queue = f"cli-exit-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="cli-exit-") as tmp:
        bad_spec = Path(tmp) / "bad.yaml"
        bad_spec.write_text(BAD_SPEC)
        with (
            SimServer(SimConfig(port=0)) as sim,
            DevServer(data_dir=Path(tmp), port=free_port(), headless=True) as server,
        ):
            os.environ["HARNESS_SIM_URL"] = sim.url  # the CLI processes inherit it
            print(f"dev server {server.address} (pid {server.pid}), simulator {sim.url}", flush=True)
            client = await connect(server.address)
            gateway = ModelCallActivities(ProviderSettings(sim_url=sim.url))
            activities = [gateway.model_call, gateway.resolve_models]
            try:
                async with build_worker(client, queue, activities=activities):
                    handle = await start_job(client, load_spec(ROOT / "examples/sequential.yaml"), queue)
                    await handle.result()
                    print(f"job {handle.id} finished; running the CLI {runs} times", flush=True)
                    return await loop(runs, jobs, server.address, queue, handle.id, bad_spec)
            finally:
                await gateway.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2, help="CLI processes at a time")
    args = parser.parse_args()
    code = asyncio.run(main(args.runs, args.jobs))
    # This process has a Temporal client too: end it as `harness` does, so that its own exit code is
    # the verdict and not a crash in interpreter finalization (see harness.cli.main).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
