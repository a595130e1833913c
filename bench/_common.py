"""What the process-level benches share: free ports, the simulator's tally, worker processes, and
SIGKILLs by PID. Benches import nothing from ``tests/``; this is the little they need of it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import IO, Any

from contracts.spec import JobSpec, parse_spec
from harness.devserver import DevServer, DevServerError
from harness.sim import SimServer

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_dev_server(data_dir: Path, tries: int = 3) -> DevServer:
    """A headless dev server on a free port, with its state in ``data_dir``; another port is tried
    when the one picked was taken meanwhile (other processes on the machine bind ports too)."""
    for attempt in range(tries):
        server = DevServer(data_dir=data_dir, port=free_port(), headless=True)
        try:
            return server.start()
        except DevServerError:
            server.stop()
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def sim_tally(sim: SimServer) -> dict[str, Any]:
    """The simulator's ``GET /_sim/tally``: ``{"models": {name: counters}, "total": counters}``."""
    with urllib.request.urlopen(f"{sim.url}/_sim/tally", timeout=10) as response:
        tally: dict[str, Any] = json.loads(response.read())
        return tally


def served_tokens(counters: dict[str, int]) -> int:
    """Every token the simulator served in ``counters``: completed and cut requests, input and output."""
    return (
        counters.get("input_tokens", 0)
        + counters.get("output_tokens", 0)
        + counters.get("incomplete_input_tokens", 0)
        + counters.get("incomplete_output_tokens", 0)
    )


def start_worker(
    address: str, queue: str, sim: SimServer, log: IO[bytes], **extra: str
) -> subprocess.Popen[bytes]:
    """``worker.py`` in its own process, as a user runs it; ``extra`` adds environment variables
    (``HARNESS_RECEIPTS_DIR``, ``HARNESS_CATALOG``). Its output goes to ``log`` (a pipe could fill
    and stall it)."""
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": "default",
        "HARNESS_TASK_QUEUE": queue,
        "HARNESS_SIM_URL": sim.url,
        **extra,
    }
    return subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py")], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )


def kill(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL ``process`` by its PID if it still runs, and reap it."""
    if process is None:
        return
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def kill_server(server: DevServer) -> None:
    """SIGKILL the dev server's process group (its PID is the group id) and reap it."""
    if server.pid is not None and server.running:
        os.killpg(server.pid, signal.SIGKILL)
    server.stop()  # reaps the dead child; signals nothing else


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def echo_chain(turns: int, prefix: str = "bench") -> JobSpec:
    """A sequential chain of ``turns`` steps on sim:echo, each fed the previous output (64 tokens a
    reply): the job the overhead benches time against their baselines."""
    steps = [{"id": f"s{i}", "agent": "a", "prompt": "{input}"} for i in range(turns)]
    return parse_spec(
        {
            "id": f"{prefix}-{uuid.uuid4().hex[:8]}",
            "task": "Write about schedulers.",
            "agents": [{"name": "a", "model": "sim:echo", "max_output_tokens": 64}],
            "steps": steps,
        }
    )
