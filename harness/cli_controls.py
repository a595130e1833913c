"""The steering commands of the ``harness`` CLI: signals and updates sent to a running job.

``register(app)`` adds them to the main typer app. Each sends one signal or update with the JSON
payload documented in ``contracts.controls`` (and the README), so the stock
``temporal workflow signal / update execute`` commands do exactly the same.
"""

from __future__ import annotations

import asyncio
import getpass
import socket
from decimal import Decimal
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console

from contracts.controls import (
    AbortRequest,
    AddBudgetRequest,
    GateDecision,
    InjectRequest,
    InterruptRequest,
    SetPriorityRequest,
)
from contracts.jobs import LedgerTotals
from harness.cli_args import JobId
from harness.cli_errors import fail as _fail

__all__ = ["register"]

console = Console()

Agent = Annotated[str | None, typer.Option("--agent", help="Who the message is for; default all.")]
Note = Annotated[str, typer.Option("--note", help="Why; recorded with the decision.")]
By = Annotated[str | None, typer.Option("--by", help="Who decides; default user@host.")]


def _run(job_id: str, name: str, payload: BaseModel | None, update: bool, result_type: Any = str) -> Any:
    """Send signal or update ``name`` to ``job_id``; print a clear error when it is refused."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError

    from activities.connect import connect
    from harness.client import update_job

    async def go() -> Any:
        client = await connect()
        if update:  # a worker must take it: said at once, in one line, when none polls the job's queue
            return await update_job(client, job_id, name, payload, result_type)
        await client.get_workflow_handle(job_id).signal(name, args=[] if payload is None else [payload])
        return None

    try:
        return asyncio.run(go())
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        _fail(f"{name} refused: {getattr(cause, 'message', None) or cause or error}")
    except RPCError as error:
        _fail(f"{name} to job {job_id!r} failed: {error.message}")


def _decider(by: str | None) -> str:
    return by or f"{getpass.getuser()}@{socket.gethostname()}"


def interrupt(
    job_id: JobId,
    message: Annotated[str, typer.Argument(help="What the agents should hear now.")],
    agent: Agent = None,
    priority: Annotated[
        int, typer.Option("--priority", help="0 is most urgent; below the job's priority preempts.")
    ] = 1,
) -> None:
    """Cancel the in-flight call (if more urgent than the job) and put MESSAGE into the conversation."""
    _run(job_id, "interrupt", InterruptRequest(message=message, agent=agent, priority=priority), False)
    console.print(f"interrupt sent to {job_id}")


def pause(job_id: JobId) -> None:
    """Start no new model call until resumed (survives worker and server restarts)."""
    _run(job_id, "pause", None, False)
    console.print(f"pause sent to {job_id}")


def resume(job_id: JobId) -> None:
    """Undo a pause."""
    _run(job_id, "resume", None, False)
    console.print(f"resume sent to {job_id}")


def inject(
    job_id: JobId,
    message: Annotated[str, typer.Argument(help="A message for the next turn.")],
    agent: Agent = None,
) -> None:
    """Add MESSAGE before the next turn, without preempting the running call."""
    _run(job_id, "inject", InjectRequest(message=message, agent=agent), False)
    console.print(f"inject sent to {job_id}")


def abort(
    job_id: JobId,
    reason: Annotated[str, typer.Option("--reason", help="Recorded as the explanation.")] = "",
) -> None:
    """End the job now with its best result so far (stop reason aborted)."""
    _run(job_id, "abort", AbortRequest(reason=reason), False)
    console.print(f"abort sent to {job_id}")


def approve(
    job_id: JobId,
    gate: Annotated[str, typer.Argument(help="Name of the pending gate.")],
    note: Note = "",
    by: By = None,
) -> None:
    """Approve a pending approval gate."""
    said = _run(job_id, "approve", GateDecision(gate=gate, note=note, by=_decider(by)), True)
    console.print(said)


def reject(
    job_id: JobId,
    gate: Annotated[str, typer.Argument(help="Name of the pending gate.")],
    note: Note = "",
    by: By = None,
) -> None:
    """Reject a pending approval gate (before a step: skip it; spend: stop; final: withhold)."""
    said = _run(job_id, "reject", GateDecision(gate=gate, note=note, by=_decider(by)), True)
    console.print(said)


def add_budget(
    job_id: JobId,
    tokens: Annotated[int, typer.Option("--tokens", help="Tokens to add.")] = 0,
    usd: Annotated[Decimal, typer.Option("--usd", help="Dollars to add, e.g. 0.25.")] = Decimal(0),
    node: Annotated[str, typer.Option("--node", help="Budget node; 'job' is the whole job.")] = "job",
    tool_calls: Annotated[int, typer.Option("--tool-calls", help="Tool calls to add.")] = 0,
) -> None:
    """Raise a budget's limits; prints the ledger after the change."""
    if not usd.is_finite():
        _fail(f"--usd must be a number of dollars, not {usd}", code=2)
    request = AddBudgetRequest(node=node, tokens=tokens, usd=usd, tool_calls=tool_calls)
    totals: LedgerTotals = _run(job_id, "add_budget", request, True, result_type=LedgerTotals)
    said = f"limits now: tokens {totals.limit_tokens}, usd {totals.limit_usd}"
    if tool_calls:
        said += f", tool calls {totals.limit_tool_calls}"
    console.print(said)


def set_priority(
    job_id: JobId,
    task: Annotated[str, typer.Argument(help="Task id, or 'job' for the running work itself.")],
    priority: Annotated[int, typer.Argument(help="0 (most urgent) to 9.")],
) -> None:
    """Change a task's priority ('job': the bar an interrupt must beat to preempt, and the Temporal
    priority of everything the job starts, its queued work included)."""
    if not 0 <= priority <= 9:
        _fail(f"set_priority refused: priority must be from 0 (most urgent) to 9, not {priority}")
    request = SetPriorityRequest(task=task, priority=priority)
    if task == "job":
        from temporalio.service import RPCError

        from activities.connect import connect
        from harness.client import set_job_priority

        async def reorder() -> int:
            return await set_job_priority(await connect(), job_id, priority)

        try:
            key = asyncio.run(reorder())
        except RPCError as error:
            _fail(f"set-priority of job {job_id!r} failed: {error.message}")
        console.print(f"{job_id}: its queued work now at Temporal priority key {key}")
    console.print(_run(job_id, "set_priority", request, True))


def register(app: typer.Typer) -> None:
    """Add the steering commands to ``app``."""
    for command in (interrupt, pause, resume, inject, abort, approve, reject):
        app.command()(command)
    app.command(name="add-budget")(add_budget)
    app.command(name="set-priority")(set_priority)
