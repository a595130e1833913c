"""The ``harness`` command line as a user runs it: a real process, real output."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console
from temporalio.testing import WorkflowEnvironment

from contracts.jobs import LedgerTotals
from contracts.models import Usage
from harness.cli import budget_table, estimate_reasons
from harness.sim import SimServer
from policies.ledger import Ledger, Limits, Quota
from tests.helpers import harness


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


def test_the_summary_says_why_a_figure_is_estimated() -> None:
    """The spend line names each reason an estimate was needed, and none when nothing was estimated."""
    exact = Usage(input_tokens=10, output_tokens=5, requests=1)
    older = Usage(input_tokens=10, output_tokens=5, requests=1, estimated=True)  # from before reasons
    assert estimate_reasons(older) == "usage not reported in full"
    cut = Usage(input_tokens=10, output_tokens=5, requests=1).because("cut short")
    lost = Usage(input_tokens=3, output_tokens=2, requests=1).because("worker lost")
    assert estimate_reasons(cut + lost + exact) == "calls cut short, attempts whose worker was lost"
    assert not (exact + exact).estimated and (cut + exact).estimated


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
