"""The ``harness`` command line as a user runs it: a real process, real output."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from contracts.jobs import JobResult, LedgerTotals, StopReason, TurnRecord
from contracts.models import Usage
from contracts.spec import parse_spec
from harness.cli import budget_table, estimate_reasons, one_line_error, print_result, turn_panel
from harness.client import start_job, worker_missing
from harness.sim import SimServer
from policies.ledger import Ledger, Limits, Quota
from tests.helpers import ROOT, harness


def test_bad_spec_is_refused_with_the_field(tmp_path: Path) -> None:
    """A spec naming an unknown agent exits 2 with the field and reason, before anything starts."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: t\nagents: [{name: a, model: 'sim:writer'}]\nsteps: [{id: s, agent: b}]\n")
    done = harness("run", str(bad))
    assert done.returncode == 2
    assert "steps.0.agent: unknown agent 'b'" in done.stderr


def test_unknown_price_is_refused_before_start(tmp_path: Path) -> None:
    """A model with no known price is refused at submission: an unknown price is never free."""
    spec = tmp_path / "unpriced.yaml"
    spec.write_text(
        "task: t\nagents: [{name: a, model: 'openai-compatible:my-llama'}]\nsteps: [{id: s, agent: a}]\n"
    )
    done = harness("run", str(spec))
    assert done.returncode == 2
    assert "no known price" in done.stderr


@pytest.mark.e2e
def test_run_prints_result_spend_stop_reason_and_link(dev_env: WorkflowEnvironment, sim: SimServer) -> None:
    """`harness run examples/sequential.yaml` completes and prints result, tokens, cost, stop reason
    and the job's Temporal UI link; `harness status` then reads the finished job."""
    env = {
        "TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "HARNESS_SIM_URL": sim.url,
        "HARNESS_TASK_QUEUE": "cli-test",
        "HARNESS_UI_URL": "http://ui.example:9000",  # a remote server's UI: the link uses it
    }
    done = harness("run", "examples/sequential.yaml", env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "result" in out and "Draft v" in out
    assert "stop reason  completed" in out
    assert "tokens" in out and "$" in out
    assert "Temporal UI: http://ui.example:9000/namespaces/default/workflows/launch-note-" in out
    job_id = out.split("/workflows/")[1].split()[0]
    status = harness("status", job_id, "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert '"stop_reason": "completed"' in status.stdout
    # Without --json: the progress table and the budget per node, read from the ended job's result
    # (its worker is gone).
    table = harness("status", job_id, env=env)
    assert table.returncode == 0, table.stderr
    assert "finished" in table.stdout and "budget" in table.stdout
    job_row = next(line for line in table.stdout.splitlines() if line.strip().startswith("job "))
    assert "tok" in job_row and "$" in job_row
    spent = harness("ledger", job_id, env=env)
    assert spent.returncode == 0, spent.stderr
    assert "remaining" in spent.stdout and "writer:" in spent.stdout
    # `harness list` finds it among the session's jobs, from the search attributes (no worker).
    row = listed(job_id, env, "--mode", "sequential", "--status", "finished")
    assert row["mode"] == "sequential" and row["status"] == "finished"
    assert row["stop_reason"] == "completed" and row["tokens"] > 0 and row["cost_usd"] > 0
    table = harness("list", "--limit", "1000", env=env)
    assert table.returncode == 0, table.stderr
    line = next(line for line in table.stdout.splitlines() if line.strip().startswith(job_id))
    assert line.split()[1:4] == ["sequential", "finished", "completed"], line
    assert harness("list", "--status", "done", env=env).returncode == 2


def listed(job_id: str, env: dict[str, str], *filters: str) -> dict[str, object]:
    """The job's row in `harness list --json` (visibility may trail the job's end by a moment)."""
    deadline = time.monotonic() + 10
    while True:
        done = harness("list", "--json", "--limit", "1000", *filters, env=env)
        assert done.returncode == 0, done.stderr
        rows = {row["job_id"]: row for row in json.loads(done.stdout)}
        if job_id in rows and rows[job_id]["stop_reason"] is not None:
            return rows[job_id]
        assert time.monotonic() < deadline, f"{job_id} not listed: {sorted(rows)}"
        time.sleep(0.5)


def one_line(done: object) -> str:
    """The single stderr line of a failed command (asserting there is exactly one)."""
    lines = [line for line in getattr(done, "stderr", "").splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [
        ["status", "x"],
        ["ledger", "x"],
        ["transcript", "x"],
        ["result", "x"],
        ["worker"],
        ["budget", "show", "a"],
        ["list"],
    ],
)
def test_no_server_is_one_line_and_exit_1(command: list[str]) -> None:
    """With no Temporal at the address, every command says so in one line (no traceback), exit 1."""
    done = harness(*command, env={"TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert done.returncode == 1
    line = one_line(done)
    assert line.startswith("error: cannot reach Temporal at 127.0.0.1:1"), line
    assert "harness server" in line


@pytest.mark.e2e
async def test_reads_of_unknown_and_ended_jobs_and_jobs_no_worker_serves(
    dev_env: WorkflowEnvironment, sim: SimServer
) -> None:
    """An unknown job id: one line, exit 1, for each read. An ended job with no worker left: status
    and ledger answer from its result. The transcript (a query, which a worker answers) says in
    harness's own line, naming the task queue and ``harness worker``, that no worker answered:
    while the server still lists the gone worker's poller (the query is tried, and Temporal says
    it timed out or that it saw no poll recently), and for a job whose queue no worker ever polled
    (said at once, no query tried)."""
    client = dev_env.client
    queue = f"cli-reads-{uuid.uuid4().hex[:6]}"
    env = {
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "HARNESS_SIM_URL": sim.url,
        "HARNESS_TASK_QUEUE": queue,
        "HARNESS_UI_URL": "http://ui.example:9000",  # so the run prints the job's link (and id)
    }
    for command in ("status", "ledger", "transcript"):
        done = harness(command, "no-such-job", env=env)
        assert done.returncode == 1, done.stderr
        assert one_line(done) == "error: no job 'no-such-job' (no workflow has that id)"
    ran = harness("run", "examples/sequential.yaml", env=env)
    assert ran.returncode == 0, ran.stderr
    job_id = ran.stdout.split("/workflows/")[1].split()[0]
    for command, shown in (("status", "stop reason: completed"), ("ledger", "remaining")):
        done = harness(command, job_id, env=env)
        assert done.returncode == 0, done.stderr
        assert shown in done.stdout, done.stdout
    # The run's worker has stopped, but the server keeps listing its poller for minutes.
    assert await has_pollers(client, queue)
    done = harness("transcript", job_id, env=env)
    assert done.returncode == 1
    line = one_line(done)
    assert line.startswith(f"error: no worker answered on task queue {queue!r} ("), line
    assert "is a worker running? Start `harness worker`" in line

    never = f"cli-never-{uuid.uuid4().hex[:6]}"
    handle = await start_job(client, parse_spec(SIMPLE), queue=never)
    try:
        assert not await has_pollers(client, never)
        for command in ("status", "transcript"):
            done = harness(command, handle.id, env=env)
            assert done.returncode == 1
            assert one_line(done) == (
                f"error: no worker answered on task queue {never!r} (none polls it), and reading a "
                f"job's {command} needs one: is a worker running? Start `harness worker` (with the "
                "same HARNESS_TASK_QUEUE)"
            )
    finally:
        await handle.terminate()


SIMPLE = {
    "task": "t",
    "agents": [{"name": "a", "model": "sim:writer"}],
    "steps": [{"id": "s", "agent": "a"}],
}


async def has_pollers(client: Client, queue: str) -> bool:
    """Whether the server lists a workflow poller on ``queue`` (gone workers' too, for a while)."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    return bool((await client.workflow_service.describe_task_queue(request)).pollers)


@pytest.mark.parametrize(
    ("status", "message", "missing"),
    [
        # The three answers this dev server gave to a query no worker took (seen 2026-12-08).
        (RPCStatusCode.DEADLINE_EXCEEDED, "query timed out before a worker could process it", True),
        (RPCStatusCode.CANCELLED, "Timeout expired", True),
        (
            RPCStatusCode.FAILED_PRECONDITION,
            "no poller seen for task queue recently, worker may be down",
            True,
        ),
        (RPCStatusCode.FAILED_PRECONDITION, "workflow is not ready", False),
        (RPCStatusCode.INVALID_ARGUMENT, "unknown query type", False),
    ],
)
def test_each_way_temporal_says_no_worker_took_a_query_is_recognised(
    status: RPCStatusCode, message: str, missing: bool
) -> None:
    """Every answer Temporal gives to a query no worker took is read as 'no worker'; other
    failures are not, and the CLI shows the no-worker ones in its own words."""
    error = RPCError(message, status, b"")
    assert (worker_missing(error) is not None) is missing
    line = one_line_error(error)
    assert line is not None
    assert ("is a worker running? Start `harness worker`" in line) is missing, line


def test_the_summary_says_why_a_figure_is_estimated() -> None:
    """The spend line names each reason an estimate was needed, and none when nothing was estimated."""
    exact = Usage(input_tokens=10, output_tokens=5, requests=1)
    older = Usage(input_tokens=10, output_tokens=5, requests=1, estimated=True)  # from before reasons
    assert estimate_reasons(older) == "usage not reported in full"
    cut = Usage(input_tokens=10, output_tokens=5, requests=1).because("cut short")
    lost = Usage(input_tokens=3, output_tokens=2, requests=1).because("worker lost")
    assert estimate_reasons(cut + lost + exact) == "calls cut short, attempts whose worker was lost"
    assert not (exact + exact).estimated and (cut + exact).estimated


def test_a_failed_job_prints_only_why(capsys: pytest.CaptureFixture[str]) -> None:
    """The end of a failed run shows its stop reason, why and the spend, and no result panel (an
    older result of a failed job held the task as its output: not shown either)."""
    failed = JobResult(
        job_id="j",
        mode="sequential",
        stop_reason=StopReason.failed,
        explanation="model 'sim:fsat' is not in the catalog",
        output="Write a note about durable agent scheduling.",
        ledger=LedgerTotals(),
        turns=0,
    )
    print_result(failed, None)
    shown = capsys.readouterr().out
    assert "failed" in shown and "model 'sim:fsat' is not in the catalog" in shown
    assert "result" not in shown.split("stop reason")[0] and "durable agent" not in shown
    print_result(failed.model_copy(update={"stop_reason": StopReason.completed, "output": "Done."}), None)
    assert "Done." in capsys.readouterr().out


def test_a_turn_shows_the_attempts_lost_before_it() -> None:
    """A turn whose first attempt died with its worker shows that attempt, charged and estimated
    and why, under its reply."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    turn = TurnRecord(
        index=0,
        call_id="c1",
        agent="writer",
        step="one",
        model="sim:writer",
        provider="sim",
        text="The reply.",
        usage=Usage(input_tokens=178, output_tokens=10, requests=1),
        cost_usd=Decimal("0.000198"),
        started_at=now,
        ended_at=now,
        lost_usage=Usage(input_tokens=178, output_tokens=2, requests=1).because("worker lost"),
        lost_cost_usd=Decimal("0.000182"),
    )
    console = Console(width=200, record=True)
    console.print(turn_panel(turn))
    shown = console.export_text()
    assert "The reply." in shown
    assert "1 earlier attempt lost: 178 in, 2 out, $0.000182 charged (estimated: " in shown
    assert "attempts whose worker was lost" in shown
    console.print(turn_panel(turn.model_copy(update={"lost_usage": None})))
    assert "lost" not in console.export_text()


def test_the_budget_table_shows_tool_calls_used_of_each_nodes_cap() -> None:
    """Each node's row shows its tool calls used (spent and reserved) of its cap, and a tool-call
    quota shows in the notes."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    ledger = Ledger()
    quota = Quota(tool_calls=5, period=timedelta(hours=1))
    ledger.add_node("job", None, Limits(tool_calls=10), quota=quota, period_anchor=start)
    ledger.add_node("agent:w", "job")
    ledger.add_node("agent:idle", "job")
    for n in range(3):
        ledger.reserve_tool(f"t{n}", "agent:w", usd=Decimal(0), now=start)
    ledger.settle("t0", tokens=0, usd=Decimal(0))
    console = Console(width=200, record=True)
    console.print(budget_table(LedgerTotals(nodes=ledger.view().nodes)))
    lines = console.export_text().splitlines()
    header = [cell.strip() for cell in next(line for line in lines if "node" in line).split("┃")]
    rows = {
        cells[0]: cells
        for cells in ([c.strip() for c in line.split("│")] for line in lines)
        if len(cells) > 1
    }
    tools = header.index("tools")
    assert (rows["job"][tools], rows["agent:w"][tools], rows["agent:idle"][tools]) == ("3/10", "3", "-")
    assert "3 tool calls of 5 tool calls per 1:00:00" in rows["job"][header.index("notes")]


def test_reading_and_steering_import_no_provider_or_mcp_sdk() -> None:
    """What the read and steering commands import (the CLI, the client helpers, ``connect``) loads
    neither provider SDK nor the MCP SDK, nor the worker: they are what made every command slow."""
    probe = (
        "import sys, harness.cli, harness.client, harness.cli_controls, activities.connect; "
        "print(' '.join(m for m in ('openai', 'anthropic', 'mcp', 'worker') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_version_is_the_installed_packages() -> None:
    """``harness --version`` prints the version in the package's metadata and exits 0, connecting to
    nothing (no Temporal answers at the address)."""
    done = harness("--version", env={"TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"harness {importlib.metadata.version('harness')}\n"


def test_a_worker_for_some_roles_needs_them_split() -> None:
    """``harness worker --queues jobs`` without ``HARNESS_ROLE_QUEUES=1`` is refused before it
    connects (exit 2, one line): the model calls would have no worker."""
    done = harness(
        "worker", "--queues", "jobs", env={"TEMPORAL_ADDRESS": "127.0.0.1:1", "HARNESS_ROLE_QUEUES": ""}
    )
    assert done.returncode == 2
    assert "needs HARNESS_ROLE_QUEUES=1 on every worker" in one_line(done)
