"""How the ``harness`` command line fails and ends, as a user runs it (a real process, real output):
every failure is one line on stderr, ``error: ...``, exit 2 for bad input and 1 otherwise, never a
traceback; a command that needs a worker says at once that none runs; an ended job's outcome and
status say what happened, gates included."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.codec import KEY_FILE_ENV, KEYS_ENV, data_converter
from activities.model_call import ModelCallActivities
from contracts.jobs import JobProgress, StopReason
from contracts.names import account_workflow_id
from contracts.spec import JobSpec, parse_spec
from harness.client import start_job
from harness.sim import SimServer
from tests.helpers import harness, make_worker, run_job, status_of, until

NO_SERVER = {"TEMPORAL_ADDRESS": "127.0.0.1:1"}  # a command that connected would say it cannot


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command, asserting there is exactly one and no traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def no_worker(queue: str, doing: str, how: str = "none polls it") -> str:
    """The line a command that needs a worker prints when none answers."""
    return (
        f"error: no worker answered on task queue {queue!r} ({how}), and {doing} needs one: "
        "is a worker running? Start `harness worker` (with the same HARNESS_TASK_QUEUE)"
    )


@pytest.mark.parametrize(
    ("command", "line"),
    [
        (
            ["add-budget", "j", "--usd", "abc"],
            "error: Invalid value for '--usd': Input should be a valid decimal "
            "(see `harness add-budget --help`)",
        ),
        (
            ["budget", "topup", "team", "--usd", "abc"],
            "error: Invalid value for '--usd': Input should be a valid decimal "
            "(see `harness budget topup --help`)",
        ),
        (
            ["status", ""],
            "error: Invalid value for 'job_id': a job id is never empty (see `harness status --help`)",
        ),
        (
            ["approve", " ", "gate"],
            "error: Invalid value for 'job_id': a job id is never empty (see `harness approve --help`)",
        ),
        (["status"], "error: Missing argument 'job_id' (see `harness status --help`)"),
        (["status", "j", "--bogus"], "error: No such option: --bogus (see `harness status --help`)"),
        (["budget", "create", "team"], "error: give --usd or --tokens (or both)"),
        (["budget", "create", "team", "--usd", "1", "--period", "often"], None),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_anything_connects(
    command: list[str], line: str | None
) -> None:
    """A value that does not parse, an empty job id, a missing argument or an unknown option: one
    line naming it (and where the command's help is), exit 2, with no server to connect to."""
    done = harness(*command, env=NO_SERVER)
    assert done.returncode == 2, done.stderr
    said = one_line(done)
    if line is None:
        assert said.startswith("error: --period: not a duration: 'often'"), said
    else:
        assert said == line


def cli_env(env: WorkflowEnvironment, queue: str, **more: str) -> dict[str, str]:
    """The environment of a ``harness`` command against the test's dev server and ``queue``."""
    return {
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "HARNESS_TASK_QUEUE": queue,
        KEYS_ENV: "",
        KEY_FILE_ENV: "",
        **more,
    }


def fresh(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


TWO_STEPS: dict[str, Any] = {
    "mode": "sequential",
    "task": "Write about failures.",
    "agents": [{"name": "writer", "model": "sim:writer", "max_output_tokens": 60}],
    "steps": [
        {"id": "one", "agent": "writer", "prompt": "{task}"},
        {"id": "two", "agent": "writer", "prompt": "Improve: {input}"},
    ],
}


def spec(**overrides: Any) -> JobSpec:
    """The two-step job, with a fresh id and ``overrides``."""
    return parse_spec({**TWO_STEPS, "id": fresh("fail"), **overrides})


@pytest.mark.e2e
async def test_budget_commands_say_in_one_line_that_a_worker_must_run(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """``budget create`` with no worker creates the account and says no worker serves it yet;
    ``topup`` and ``show`` then fail in one line naming the task queue and ``harness worker``
    (they hung or failed with a raw Temporal error): at once while no worker ever polled, and once
    the only worker has stopped (the server still lists its poller), after the update's wait."""
    queue, name = fresh("cli-acct"), fresh("team")
    env = cli_env(dev_env, queue)
    created = harness("budget", "create", name, "--usd", "1", env=env)
    assert created.returncode == 0, created.stderr
    assert (
        f"no worker polls task queue {queue!r} yet: the account answers `budget show`, `budget topup` "
        "and the leases of its jobs once one runs (`harness worker`)"
    ) in created.stdout.splitlines()
    try:
        topup = harness("budget", "topup", name, "--usd", "1", env=env, timeout=60)
        assert topup.returncode == 1
        assert one_line(topup) == no_worker(queue, f"the topup of account {name!r}")
        show = harness("budget", "show", name, env=env, timeout=60)
        assert show.returncode == 1
        assert one_line(show) == no_worker(queue, f"reading account {name!r}")
        async with make_worker(dev_env.client, gateway, queue=queue):
            served = await asyncio.to_thread(harness, "budget", "topup", name, "--usd", "1", env=env)
            assert served.returncode == 0, served.stderr
            assert "$1" in served.stdout
        gone = harness("budget", "topup", name, "--usd", "1", env=env, timeout=60)
        assert gone.returncode == 1
        waited = "none took it within 10 s; it may still apply once one runs: look before sending it again"
        assert one_line(gone) == no_worker(queue, f"the topup of account {name!r}", waited)
        missing = harness("budget", "topup", fresh("nobody"), "--usd", "1", env=env)
        assert missing.returncode == 1
        assert one_line(missing).startswith("error: no account 'nobody-")
    finally:
        await dev_env.client.get_workflow_handle(account_workflow_id(name)).terminate(reason="test done")


@pytest.mark.e2e
async def test_an_update_to_a_job_nobody_serves_is_one_line_at_once(dev_env: WorkflowEnvironment) -> None:
    """An update to a job whose queue no worker polls fails at once in one line naming the queue
    and ``harness worker`` (it waited for a worker for ever)."""
    queue = fresh("cli-idle")
    handle = await start_job(dev_env.client, spec(), queue=queue)
    try:
        done = harness("approve", handle.id, "ship", env=cli_env(dev_env, queue), timeout=60)
        assert done.returncode == 1
        assert one_line(done) == no_worker(queue, f"the approve update to job {handle.id!r}")
    finally:
        await handle.terminate(reason="test done")


@pytest.mark.e2e
async def test_a_job_temporal_terminated_has_no_result_and_says_why(dev_env: WorkflowEnvironment) -> None:
    """Once Temporal has terminated a job, ``result`` says in one line that it has none and why (a
    traceback before), and ``status`` shows it failed with that reason."""
    queue = fresh("cli-terminated")
    env = cli_env(dev_env, queue)
    handle = await start_job(dev_env.client, spec(), queue=queue)
    await handle.terminate(reason="cleaning up")
    result = harness("result", handle.id, env=env)
    assert result.returncode == 1
    assert one_line(result) == f"error: job {handle.id!r} has no result: it was terminated (cleaning up)"
    status = harness("status", handle.id, "--json", env=env)
    assert status.returncode == 0, status.stderr
    progress = JobProgress.model_validate_json(status.stdout)
    assert (progress.status.value, progress.detail) == ("failed", "it was terminated (cleaning up)")


@pytest.mark.e2e
async def test_run_no_follow_says_a_worker_must_run_the_job(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """``harness run --no-follow`` with no worker on the job's queue says the job waits for one and
    how to start it, and how to follow the job."""
    queue = fresh("cli-detached")
    job = spec()
    path = tmp_path / "job.json"
    path.write_text(job.model_dump_json())
    done = harness("run", "--no-follow", str(path), env=cli_env(dev_env, queue))
    try:
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert f"started job {job.id}" in lines
        assert (
            f"no worker polls task queue {queue!r}: the job waits until one runs there; "
            "start one with `harness worker` (same HARNESS_TASK_QUEUE)"
        ) in lines
        assert f"follow it with `harness status {job.id}`; its result: `harness result {job.id}`" in lines
    finally:
        await dev_env.client.get_workflow_handle(job.id or "").terminate(reason="test done")


@pytest.mark.e2e
async def test_a_rejected_gate_shows_in_the_explanation_and_the_ended_status(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A job whose gated step was rejected from the command line ends saying which step was
    skipped, at which gate, by whom (it said "all steps ran"); its status, read from the result once
    it ended, shows the gate, the priority set while it ran and the interrupt it received (it
    showed no gates, the spec's priority and no interrupts)."""
    queue = fresh("cli-gate")
    env = cli_env(dev_env, queue)
    job = spec(gates=[{"name": "ship", "before_step": "two", "timeout": "1h"}])
    explanation = "1 step of 2 ran; step 'two' skipped: gate 'ship' rejected by alice"
    async with make_worker(dev_env.client, gateway, queue=queue):
        handle = await start_job(dev_env.client, job, queue=queue)
        await until(lambda: _pending(handle))
        for command in (
            ("set-priority", handle.id, "job", "1"),
            ("interrupt", handle.id, "later, please", "--priority", "5"),
            ("reject", handle.id, "ship", "--by", "alice"),
        ):
            done = await asyncio.to_thread(harness, *command, env=env)
            assert done.returncode == 0, done.stderr
        await handle.result()
    status = harness("status", handle.id, "--json", env=env)
    assert status.returncode == 0, status.stderr
    progress = JobProgress.model_validate_json(status.stdout)
    assert progress.stop_reason is StopReason.completed and progress.detail == explanation
    assert [(gate.gate, gate.outcome, gate.by) for gate in progress.gates] == [("ship", "rejected", "alice")]
    assert (progress.priority, progress.interrupts) == (1, 1)
    table = harness("status", handle.id, env=env).stdout
    assert "ship (before step two): rejected by alice" in table
    assert "(2/2 done, 1 skipped at a gate)" in table
    shown = harness("result", handle.id, env=env)
    assert shown.returncode == 0, shown.stderr
    assert f"why          {explanation}" in shown.stdout


async def _pending(handle: WorkflowHandle[Any, Any]) -> JobProgress | None:
    progress = await status_of(handle)
    return progress if progress.pending_gates else None


@pytest.mark.e2e
def test_a_job_that_failed_before_any_call_prints_no_result(
    dev_env: WorkflowEnvironment, sim: SimServer, tmp_path: Path
) -> None:
    """A job that failed before its first call (its budget account does not exist) shows, in
    ``run``, ``result`` and ``status``, that it failed and why, and never its task as a result."""
    canary = fresh("canary")
    job = spec(task=f"Summarise {canary}.", account=fresh("nope"), budget={"usd": "0.01"})
    path = tmp_path / "job.json"
    path.write_text(job.model_dump_json())
    env = cli_env(dev_env, fresh("cli-failed"), HARNESS_SIM_URL=sim.url)
    why = f"no budget account {job.account!r}"
    ran = harness("run", str(path), "--data-dir", str(tmp_path / "data"), env=env)
    assert ran.returncode == 0, ran.stderr
    assert "stop reason  failed" in ran.stdout and why in ran.stdout
    for command in (("result",), ("result", "--json"), ("status",), ("status", "--json")):
        done = harness(command[0], job.id or "", *command[1:], env=env)
        assert done.returncode == 0, done.stderr
        assert why in done.stdout, (command, done.stdout)
        assert canary not in done.stdout, (command, done.stdout)
    output = json.loads(harness("result", job.id or "", "--json", env=env).stdout)["output"]
    assert output == ""


@pytest.mark.e2e
async def test_an_encrypted_job_read_without_its_key_is_one_line(
    dev_env: WorkflowEnvironment, gateway: ModelCallActivities
) -> None:
    """A job whose payloads are encrypted, read with no key set, says so in one line naming the
    setting (a KeyError traceback before); read with another key, it names the key it needs."""
    key = f"k1={base64.b64encode(os.urandom(32)).decode()}"
    client = await Client.connect(
        dev_env.client.service_client.config.target_host,
        data_converter=data_converter({**os.environ, KEYS_ENV: key}),
    )
    async with make_worker(client, gateway) as worker:
        result = await run_job(client, worker.task_queue, spec())
    env = cli_env(dev_env, worker.task_queue)
    for command in ("result", "status", "ledger"):
        done = harness(command, result.job_id, env=env)
        assert done.returncode == 1
        assert one_line(done) == (
            "error: the data is encrypted (binary/encrypted) and no key is set here: set "
            "HARNESS_CODEC_KEYS (or HARNESS_CODEC_KEY_FILE) to the keys the workers use "
            "(see README, Encryption)"
        )
    other = f"k2={base64.b64encode(os.urandom(32)).decode()}"
    done = harness("result", result.job_id, env={**env, KEYS_ENV: other})
    assert done.returncode == 1
    assert one_line(done) == (
        "error: payload sealed with key 'k1', which HARNESS_CODEC_KEYS does not hold (it has k2): "
        "add that key back to decrypt it"
    )
