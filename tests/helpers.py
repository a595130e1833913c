"""Helpers the tests share: workers, jobs, budget accounts, the simulator's control API, worker
processes, dev servers of a test's own and the ``harness`` command. Fixtures are in
``tests/conftest.py`` (and ``tests/e2e/conftest.py``); this module has none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.budget_account import BudgetAccountActivities
from activities.codec import data_converter
from activities.model_call import ModelCallActivities
from contracts.accounts import AccountState
from contracts.jobs import JobProgress, JobResult, TurnRecord
from contracts.names import ACCOUNT_WORKFLOW, account_workflow_id
from contracts.spec import JobSpec
from harness.devserver import DevServer
from harness.sim import SimServer
from worker import WorkerGroup, build_worker
from workflows import WORKFLOW_FOR_MODE

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
HARNESS = str(BIN / "harness")

# --- workers and jobs ----------------------------------------------------------------------------


def make_worker(
    client: Client,
    gateway: ModelCallActivities,
    activities: Sequence[Any] | None = None,
    queue: str | None = None,
    **options: Any,
) -> WorkerGroup:
    """The workers of every role (every workflow, and the model and tool queues), for jobs on a
    fresh random task queue (``worker.task_queue``) unless given."""
    queue = queue or f"test-{uuid.uuid4().hex[:12]}"
    return build_worker(
        client,
        queue,
        activities=activities if activities is not None else [gateway.model_call, gateway.resolve_models],
        **options,
    )


async def start_job(
    client: Client, queue: str, spec: JobSpec, **options: Any
) -> WorkflowHandle[Any, JobResult]:
    """Start ``spec`` as its mode's workflow, under the spec's id, on ``queue``; ``options`` go to
    ``start_workflow`` (``start_signal="pause"``, say)."""
    return await client.start_workflow(
        WORKFLOW_FOR_MODE[spec.mode],
        spec,
        id=spec.id or "",
        task_queue=queue,
        result_type=JobResult,
        **options,
    )


async def close_order(handles: Sequence[WorkflowHandle[Any, Any]]) -> list[str]:
    """The workflows' ids in the order they closed."""
    closed = {handle.id: (await handle.describe()).close_time for handle in handles}
    return sorted(closed, key=lambda workflow_id: closed[workflow_id] or 0)


async def run_job(client: Client, queue: str, spec: JobSpec) -> JobResult:
    """Run ``spec`` to its end (see ``start_job``) and return its result."""
    return await (await start_job(client, queue, spec)).result()


async def status_of(handle: WorkflowHandle[Any, Any]) -> JobProgress:
    """The job's ``status`` query."""
    progress: JobProgress = await handle.query("status", result_type=JobProgress)
    return progress


async def transcript_of(handle: WorkflowHandle[Any, Any]) -> list[TurnRecord]:
    """The job's ``transcript`` query: every turn so far, in order."""
    turns: list[TurnRecord] = await handle.query("transcript", result_type=list[TurnRecord])
    return turns


async def until(
    check: Callable[[], Awaitable[Any]],
    within: float = 30.0,
    every: float = 0.05,
    failure: str = "condition not reached in time",
) -> Any:
    """Poll the async ``check`` until it returns something truthy and return that; fail the test
    with ``failure`` if ``within`` seconds pass first."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(every)
    pytest.fail(failure)


# The JSON Schema of sim:planner's plan, for goal checks.
PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["subtasks"],
    "properties": {
        "subtasks": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "title", "priority"],
                "properties": {"priority": {"type": "integer", "minimum": 1, "maximum": 5}},
            },
        }
    },
}


# --- budget accounts -----------------------------------------------------------------------------


def account_activities(client: Client, gateway: ModelCallActivities) -> list[Any]:
    """The model-call activities plus the budget-account ones, for a worker serving jobs that lease."""
    accounts = BudgetAccountActivities(client)
    return [gateway.model_call, gateway.resolve_models, accounts.budget_account, accounts.budget_account_reap]


async def start_account(client: Client, queue: str, **caps: Any) -> WorkflowHandle[Any, Any]:
    """A fresh budget account on ``queue``; returns its handle."""
    state = AccountState(name=f"team-{uuid.uuid4().hex[:6]}", **caps)
    return await client.start_workflow(
        ACCOUNT_WORKFLOW, state, id=account_workflow_id(state.name), task_queue=queue
    )


# --- the simulator -------------------------------------------------------------------------------


def sim_call(sim: SimServer, path: str, body: dict[str, Any] | None = None) -> Any:
    """GET (or POST ``body`` to) one of the simulator's control endpoints; returns the JSON."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{sim.url}{path}",
        data=data,
        method="GET" if body is None else "POST",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode() or "null"
    return json.loads(text)


def assert_ledger_matches_sim(result: JobResult, sim: SimServer) -> None:
    """The job's ledger equals what the simulator served, to the token."""
    tally = sim_call(sim, "/_sim/tally")["total"]
    assert result.ledger.calls == tally["completed"]
    assert result.ledger.usage.input_tokens == tally["input_tokens"]
    assert result.ledger.usage.output_tokens == tally["output_tokens"]


# --- worker processes (crash tests) --------------------------------------------------------------


def start_worker(env: WorkflowEnvironment | Client, sim: SimServer, queue: str) -> subprocess.Popen[bytes]:
    """A worker in its own process, as a user would run it, on the environment's (or client's) server.
    Its log (stderr) goes to a temporary file: a pipe nobody reads would stall a chatty worker."""
    client = env if isinstance(env, Client) else env.client
    with tempfile.TemporaryFile() as log:  # the child keeps its own descriptor of the (unlinked) file
        return subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py")],
            env=_worker_env(client.service_client.config.target_host, client.namespace, sim, queue),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


def _worker_env(address: str, namespace: str, sim: SimServer, queue: str) -> dict[str, str]:
    return {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": namespace,
        "HARNESS_TASK_QUEUE": queue,
        "HARNESS_SIM_URL": sim.url,
    }


class WorkerForks:
    """Worker processes forked from one that has imported ``worker.py`` once (``tests/worker_forks.py``),
    for tests that start a worker every few seconds: each starts in well under a second. Every
    worker is killed by its PID; ``close`` kills those still running and the forking process."""

    def __init__(self, address: str, sim: SimServer, queue: str, log_dir: Path) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = log_dir
        self.pids: list[int] = []
        self.forker = subprocess.Popen(
            [sys.executable, "-m", "tests.worker_forks", str(log_dir)],
            env=_worker_env(address, "default", sim, queue),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def start(self) -> int:
        """Start a worker; returns its PID."""
        assert self.forker.stdin is not None and self.forker.stdout is not None
        self.forker.stdin.write(b"start\n")
        self.forker.stdin.flush()
        line = self.forker.stdout.readline()
        assert line.strip().isdigit(), f"the forking process answered {line!r}"
        pid = int(line)
        self.pids.append(pid)
        return pid

    def kill(self, pid: int) -> None:
        """SIGKILL the worker ``pid`` (one this object started), if it still runs."""
        assert pid in self.pids
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def alive(self, pid: int) -> bool:
        """Whether the worker ``pid`` still runs (its parent reaps it once it has died)."""
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def log(self, pid: int) -> str:
        """What the worker ``pid`` wrote to its stderr."""
        path = self.log_dir / f"worker-{pid}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        """Kill every worker still running, then the forking process, and reap it."""
        for pid in self.pids:
            self.kill(pid)
        stop(self.forker)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker process if it still runs, and reap it."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def kill_and_replace(
    first: subprocess.Popen[bytes], env: WorkflowEnvironment, sim: SimServer, queue: str
) -> subprocess.Popen[bytes]:
    """SIGKILL the worker process and start a new one on the same queue."""
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    return start_worker(env, sim, queue)


async def run_through_a_crash(
    env: WorkflowEnvironment,
    sim: SimServer,
    queue: str,
    spec: JobSpec,
    kill_when: Callable[[WorkflowHandle[Any, JobResult]], Awaitable[None]],
    settle: float,
    within: float,
) -> tuple[JobResult, list[TurnRecord]]:
    """Run ``spec`` on a worker process; once ``kill_when`` returns and ``settle`` more seconds pass,
    SIGKILL it and start another on ``queue``; return the job's result (within ``within`` seconds)
    and transcript. Every worker process is stopped at the end."""
    first = start_worker(env, sim, queue)
    second: subprocess.Popen[bytes] | None = None
    try:
        handle = await start_job(env.client, queue, spec)
        await kill_when(handle)
        await asyncio.sleep(settle)
        second = kill_and_replace(first, env, sim, queue)
        result = await asyncio.wait_for(handle.result(), timeout=within)
        return result, await transcript_of(handle)
    finally:
        stop(first)
        if second is not None:
            stop(second)


# --- dev servers of a test's own (server crash tests) -------------------------------------------


FIXED_PORTS = range(20000, 32768)
"""Where ``free_port`` picks: below Linux's ephemeral range (32768-60999), which the kernel hands
out to whoever binds port 0. A port taken from that range and released can be handed to another
socket (a dev server's metrics listener, a client) before the process it was picked for binds it:
a test's dev server once died with "bind: address already in use" on its UI port that way."""


def free_port() -> int:
    """A TCP port nothing listens on right now, outside the range the kernel assigns by itself."""
    for _ in range(200):
        port = random.choice(FIXED_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {FIXED_PORTS}")


def kill_server(server: DevServer) -> None:
    """SIGKILL the dev server's process group (by its PID) and reap it."""
    pid = server.pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    server.stop()  # reaps the dead child; signals nothing else


async def connect(server: DevServer) -> Client:
    """A client of ``server`` with harness's converter (``activities.codec.data_converter``: encrypted
    when this process's environment has a key)."""
    return await Client.connect(server.address, data_converter=data_converter())


# --- the command line ----------------------------------------------------------------------------


def harness(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the ``harness`` command and capture what it prints."""
    return subprocess.run(
        [HARNESS, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=timeout,
        check=False,
    )
