"""``harness budget ...``: budget accounts shared by jobs (``workflows.account``).

``create`` starts the account's workflow (id ``account-<name>``) on the harness task queue, so a
worker (``harness worker``, or the one ``harness run`` starts) serves it; ``show`` queries it;
``topup`` raises this period's caps. Both need that worker and say so in one line, at once, when
none polls the queue. A job draws on an account by naming it: ``account: NAME``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from contracts.accounts import AccountState, AccountView, TopupRequest
from contracts.names import ACCOUNT_WEIGHT_MEMO, ACCOUNT_WORKFLOW, account_workflow_id
from harness.cli_errors import fail as _fail

__all__ = ["account_table", "budget_app", "parse_period"]

budget_app = typer.Typer(help="Budget accounts: one budget per team, leased by the jobs that name it.")
console = Console()
PERIODS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}


def parse_period(value: str | None) -> timedelta | None:
    """'hour', 'day', 'week', a duration ('12h', '30m'), or 'none' / None for a pot that never resets."""
    if value is None or value.strip().lower() in ("", "none", "never"):
        return None
    named = PERIODS.get(value.strip().lower())
    from contracts.spec import parse_duration  # the spec's parser; imported only when needed

    duration = named if named is not None else parse_duration(value)
    if duration <= timedelta(0):
        raise ValueError("the period must be positive")
    return duration


def account_table(view: AccountView) -> Table:
    """One row per capped dimension: cap, top-ups, spent, leased, remaining; then open leases."""
    state = view.state
    period = "never resets" if state.period is None else f"per {state.period}"
    reset = f", next reset {view.next_reset:%Y-%m-%d %H:%M:%S} UTC" if view.next_reset else ""
    weight = f"; fairness weight {state.weight:g}" if state.weight != 1 else ""
    table = Table(title=f"account {state.name} ({period}{reset}; run {state.runs}{weight})")
    for column in ("", "cap", "top-ups", "spent", "leased", "remaining", "lifetime spent"):
        table.add_column(column, justify="left" if not column else "right")
    if state.usd is not None:
        table.add_row(
            "usd",
            f"${state.usd}",
            f"${state.topup_usd}",
            f"${state.spent_usd}",
            f"${view.leased_usd}",
            f"${view.remaining_usd}",
            f"${state.lifetime_usd}",
        )
    if state.tokens is not None:
        table.add_row(
            "tokens",
            str(state.tokens),
            str(state.topup_tokens),
            str(state.spent_tokens),
            str(view.leased_tokens),
            str(view.remaining_tokens),
            str(state.lifetime_tokens),
        )
    for lease in state.leases.values():
        held = ", ".join(
            part
            for part in (
                f"${lease.usd}" if lease.usd is not None else "",
                f"{lease.tokens} tokens" if lease.tokens is not None else "",
            )
            if part
        )
        table.caption = (
            table.caption + "\n" if table.caption else ""
        ) + f"lease: {lease.job_id} holds {held}"
    return table


@budget_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Account name; jobs name it with 'account: NAME'.")],
    usd: Annotated[Decimal | None, typer.Option(help="Dollars per period.")] = None,
    tokens: Annotated[int | None, typer.Option(help="Tokens per period.")] = None,
    period: Annotated[str, typer.Option(help="hour, day, week, a duration ('12h'), or none.")] = "day",
    weight: Annotated[
        float,
        typer.Option(
            help="Fairness weight (0.001-1000) of the account's jobs on a shared task queue: "
            "jobs of an account of weight 3 get three tasks to one of an account of weight 1."
        ),
    ] = 1.0,
) -> None:
    """Create a budget account (a long-lived workflow) with caps per period."""
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from activities.connect import connect, task_queue
    from harness.client import has_pollers

    if usd is None and tokens is None:
        _fail("give --usd or --tokens (or both)", code=2)
    if (usd is not None and usd <= 0) or (tokens is not None and tokens <= 0):
        _fail("caps must be positive", code=2)
    if not 0.001 <= weight <= 1000:
        _fail(f"--weight must be from 0.001 to 1000, not {weight}", code=2)
    try:
        every = parse_period(period)
    except ValueError as error:
        _fail(f"--period: {error}", code=2)
    state = AccountState(name=name, usd=usd, tokens=tokens, period=every, weight=weight)

    async def go() -> bool:
        client = await connect()
        await client.start_workflow(
            ACCOUNT_WORKFLOW,
            state,
            id=account_workflow_id(name),
            task_queue=task_queue(),
            memo={ACCOUNT_WEIGHT_MEMO: weight},  # jobs read it at their start, with no worker
        )
        return await has_pollers(client, task_queue())

    try:
        served = asyncio.run(go())
    except WorkflowAlreadyStartedError:
        _fail(f"account {name!r} already exists (harness budget show {name})")
    console.print(f"account [bold]{name}[/] created (workflow id {account_workflow_id(name)})")
    if not served:
        console.print(
            f"no worker polls task queue {task_queue()!r} yet: the account answers `budget show`, "
            "`budget topup` and the leases of its jobs once one runs (`harness worker`)",
            highlight=False,
            soft_wrap=True,
        )


@budget_app.command("show")
def show(name: Annotated[str, typer.Argument(help="Account name.")]) -> None:
    """Show an account: caps, this period's spend, open leases, what is left (a worker answers)."""
    from activities.connect import connect
    from harness.client import query_workflow

    async def go() -> AccountView:
        client = await connect()
        return await query_workflow(
            client, account_workflow_id(name), "show", AccountView, what=f"account {name!r}"
        )

    console.print(account_table(_on_account(name, go)))


@budget_app.command("topup")
def topup(
    name: Annotated[str, typer.Argument(help="Account name.")],
    usd: Annotated[Decimal, typer.Option(help="Dollars to add to this period.")] = Decimal(0),
    tokens: Annotated[int, typer.Option(help="Tokens to add to this period.")] = 0,
) -> None:
    """Raise an account's caps for the current period (a worker applies it)."""
    from activities.connect import connect
    from harness.client import update_account

    async def go() -> AccountView:
        request = TopupRequest(usd=usd, tokens=tokens)
        return await update_account(await connect(), name, "topup", request, AccountView)

    console.print(account_table(_on_account(name, go)))


def _on_account(name: str, call: Callable[[], Coroutine[Any, Any, AccountView]]) -> AccountView:
    """Run ``call`` against account ``name``: an account that does not exist, or an update it
    refuses, ends the command in one line (no worker: ``NoWorker``, said by ``harness.cli.main``)."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError, RPCStatusCode

    try:
        return asyncio.run(call())
    except WorkflowUpdateFailedError as error:
        _fail(str(error.cause))
    except RPCError as error:
        if error.status is not RPCStatusCode.NOT_FOUND:
            raise
        _fail(f"no account {name!r} (create it with `harness budget create {name} ...`)")
