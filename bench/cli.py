"""How fast the command line answers, and what watching a job costs: `harness` against `temporal`.

Starts the model simulator (in this process) and a headless dev server on a free port, then:

1. **Reads.** Runs one short job to its end with a worker process, stops the worker, and times, each
   as a real process ``--runs`` times in turn: ``harness status``, ``ledger`` and ``transcript`` of
   that ended job, ``harness interrupt`` of a running job (a worker up again, the job paused so it
   stays running), and ``temporal workflow describe`` of the same ended job, the Go CLI's floor.
   ``cli_read_ratio`` is the median harness read over the median describe (target at most 5);
   ``cli_read_s_p50`` the median harness read in seconds.
2. **Watching.** Runs ``--watched`` jobs of one slow streamed call (``[[sim tps=20]]``, the first
   token 0.8 to 1.6 s after the request, drawn for each job)
   with ``harness watch JOB --json`` running as a process from the start, and as many not watched.
   ``watch_first_token_s`` is the median, over the watched jobs, of the time from the simulator
   sending a reply's first token to the watcher printing it (both clocks are this machine's; target
   at most 0.5 s). ``watch_history_events_per_call`` is the extra history events per call of a
   watched job over the same job not watched (target at most 1 per streamed second, 0 with no
   watcher), and ``watch_history_events_unwatched`` the events per call with no watcher, for the
   record.

The last lines are ``name: value``, one per figure; the bench exits 0 whether or not a target is met.

    python bench/cli.py [--runs 10] [--watched 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.client import Client  # noqa: E402

from activities.connect import connect  # noqa: E402
from bench._common import kill, kill_server, start_dev_server, start_worker  # noqa: E402
from contracts.controls import AbortRequest  # noqa: E402
from contracts.spec import parse_spec  # noqa: E402
from harness.client import start_job  # noqa: E402
from harness.sim import SimConfig, SimServer  # noqa: E402

BIN = Path(sys.executable).parent
HARNESS = str(BIN / "harness")
TEMPORAL = str(BIN / "temporal")


def _spec(job_id: str, prompt: str, max_tokens: int = 60) -> Any:
    return parse_spec(
        {
            "id": job_id,
            "mode": "sequential",
            "task": "Describe a durable scheduler.",
            "agents": [{"name": "writer", "model": "sim:writer", "max_output_tokens": max_tokens}],
            "steps": [{"id": "draft", "agent": "writer", "prompt": prompt}],
        }
    )


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    return elapsed


async def _reads(
    client: Client, address: str, sim: SimServer, env: dict[str, str], runs: int, log: Any
) -> dict[str, float]:
    queue = env["HARNESS_TASK_QUEUE"]
    worker = start_worker(address, queue, sim, log)
    try:
        ended = await start_job(client, _spec(f"cli-ended-{uuid.uuid4().hex[:6]}", "{task}"), queue)
        await ended.result()
        running = await start_job(client, _spec(f"cli-running-{uuid.uuid4().hex[:6]}", "{task}"), queue)
        await running.signal("pause")
    finally:
        kill(worker)
    times: dict[str, list[float]] = {
        "status": [],
        "ledger": [],
        "transcript": [],
        "interrupt": [],
        "describe": [],
    }
    worker = start_worker(address, queue, sim, log)  # answers the interrupt of the running job
    try:
        for i in range(runs):
            for read in ("status", "ledger", "transcript"):
                times[read].append(_timed([HARNESS, read, ended.id], env))
            times["interrupt"].append(_timed([HARNESS, "interrupt", running.id, f"note {i}"], env))
            times["describe"].append(
                _timed([TEMPORAL, "workflow", "describe", "--address", address, "-w", ended.id], env)
            )
            print(
                f"  run {i + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
                flush=True,
            )
        await running.signal("abort", AbortRequest(reason="bench done"))
    finally:
        kill(worker)
    medians = {name: statistics.median(values) for name, values in times.items()}
    harness_reads = [t for name in ("status", "ledger", "transcript", "interrupt") for t in times[name]]
    for name, value in medians.items():
        print(f"  median {name}: {value:.3f}s")
    return {
        "cli_read_ratio": statistics.median(harness_reads) / medians["describe"],
        "cli_read_s_p50": statistics.median(harness_reads),
    }


def _first_tokens(sim: SimServer) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{sim.url}/_sim/first-tokens", timeout=10) as response:
        found: list[dict[str, Any]] = json.loads(response.read())
        return found


def _first_token_printed(job_id: str, env: dict[str, str]) -> float | None:
    """Run ``harness watch JOB --json`` to the job's end; when (this clock) it printed a token first."""
    printed: float | None = None
    with subprocess.Popen(
        [HARNESS, "watch", job_id, "--json"], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as watcher:
        assert watcher.stdout is not None
        for line in watcher.stdout:
            if printed is None and json.loads(line)["event"] == "token":
                printed = time.time()
    return printed


async def _history_events(client: Client, job_id: str) -> int:
    return len([event async for event in client.get_workflow_handle(job_id).fetch_history_events()])


async def _watching(
    client: Client, address: str, sim: SimServer, env: dict[str, str], jobs: int, log: Any
) -> dict[str, float]:
    queue = env["HARNESS_TASK_QUEUE"]
    worker = start_worker(address, queue, sim, log)
    delays: list[float] = []
    watched_events: list[int] = []
    unwatched_events: list[int] = []
    streamed_s = 60 / 20
    try:
        for i in range(jobs):
            # A first token 0.8-1.6 s after the request, as real models vary: the heartbeat that
            # carries it waits for the worker's heartbeat window (0.5 s), wherever it falls.
            prompt = f"{{task}} [[sim latency={random.uniform(0.8, 1.6):.3f} tps=20 tokens=60]]"
            job_id = f"cli-watch-{uuid.uuid4().hex[:6]}"
            handle = await start_job(client, _spec(job_id, prompt), queue)
            printed = await asyncio.to_thread(_first_token_printed, job_id, env)
            await handle.result()
            sent = [t["at"] for t in _first_tokens(sim)]
            if printed is None or not sent:
                print(f"  watched job {i + 1}: no token seen", flush=True)
            else:
                first = max(t for t in sent if t <= printed) if any(t <= printed for t in sent) else sent[-1]
                delays.append(printed - first)
                print(
                    f"  watched job {i + 1}: first token printed {printed - first:.3f}s after it was sent",
                    flush=True,
                )
            watched_events.append(await _history_events(client, job_id))
            plain = await start_job(client, _spec(f"cli-plain-{uuid.uuid4().hex[:6]}", prompt), queue)
            await plain.result()
            unwatched_events.append(await _history_events(client, plain.id))
    finally:
        kill(worker)
    extra = statistics.mean(watched_events) - statistics.mean(unwatched_events)
    print(f"  history events per job: watched {watched_events}, not watched {unwatched_events}")
    return {
        "watch_first_token_s": statistics.median(delays) if delays else float("nan"),
        "watch_history_events_per_call": extra,  # one call per job
        "watch_history_events_per_streamed_s": extra / streamed_s,
        "watch_history_events_unwatched": statistics.mean(unwatched_events),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10, help="Times each read command runs (default 10).")
    parser.add_argument("--watched", type=int, default=7, help="Jobs watched, and as many not (default 7).")
    args = parser.parse_args()
    sim = SimServer(SimConfig(port=0)).start()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        server = start_dev_server(Path(tmp) / "server")
        try:
            with open(Path(tmp) / "worker.log", "wb") as log:
                figures = asyncio.run(_measure(server.address, sim, args.runs, args.watched, log))
        finally:
            kill_server(server)
            sim.stop()
    for name, value in figures.items():
        print(f"{name}: {value:.3f}")


async def _measure(address: str, sim: SimServer, runs: int, watched: int, log: Any) -> dict[str, float]:
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": "default",
        "HARNESS_SIM_URL": sim.url,
        "HARNESS_TASK_QUEUE": f"bench-cli-{uuid.uuid4().hex[:6]}",
    }
    client = await connect(address)
    figures = await _reads(client, address, sim, env, runs, log)
    return figures | await _watching(client, address, sim, env, watched, log)


if __name__ == "__main__":
    main()
