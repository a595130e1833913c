"""The ``harness`` command line."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import sys
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from contracts.jobs import JobProgress, JobResult, JobStatus, LedgerTotals, StopReason, TurnRecord
from contracts.models import Usage
from contracts.names import TOOLS_ENV
from contracts.words import plural
from harness.cli_args import JobId
from harness.cli_budget import budget_app
from harness.cli_controls import register as register_controls
from harness.cli_errors import fail as _fail
from harness.cli_errors import say_error
from harness.cli_limits import limits_app
from harness.cli_routing import routing_app, routing_section
from harness.cli_watch import WatchView
from harness.cli_watch import watch as watch_command
from policies.ledger import NodeView

app = typer.Typer(
    name="harness",
    help="A durable scheduler for AI-agent work, built on Temporal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def _print_version(wanted: bool) -> None:
    """``--version``: the installed package's version, read from its metadata (nothing else loads)."""
    if not wanted:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        print(f"harness {version('harness')}")
    except PackageNotFoundError:  # run from a checkout that was never installed
        print("harness (not installed: no version)")
    raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """A durable scheduler for AI-agent work, built on Temporal."""


DataDir = Annotated[Path, typer.Option("--data-dir", help="Where the embedded server keeps its SQLite data.")]


def _usd(value: Decimal) -> str:
    return f"${value:.6f}" if value < 1 else f"${value:.2f}"


@app.command()
def server(
    data_dir: DataDir = Path(".harness"),
    port: Annotated[int, typer.Option(help="gRPC port of the frontend.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Port of the Web UI.")] = 8233,
    headless: Annotated[bool, typer.Option(help="Run without the Web UI.")] = False,
    codec_endpoint: Annotated[
        str | None,
        typer.Option(
            help="Codec server the Web UI decodes payloads through. Default when a key is set "
            "(HARNESS_CODEC_KEYS or HARNESS_CODEC_KEY_FILE): HARNESS_CODEC_ENDPOINT, else "
            "http://localhost:8888 (harness codec-server); none without a key.",
        ),
    ] = None,
) -> None:
    """Run the embedded Temporal dev server (SQLite under --data-dir, Web UI, search attributes)."""
    from activities.codec import CodecError, describe
    from harness.codec_server import ui_codec_endpoint
    from harness.devserver import DevServerError, serve_forever

    try:
        console.print(describe(), highlight=False)
        endpoint = codec_endpoint or ui_codec_endpoint()
        serve_forever(data_dir, port, ui_port, headless, ui_codec_endpoint=endpoint)
    except (DevServerError, CodecError) as error:
        _fail(str(error))


@app.command("codec-server")
def codec_server(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8888,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    ui_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--ui-origin",
            help="Origin of a Web UI allowed to call it (CORS); repeat for more, * for any. "
            "Default: the embedded UI, http://localhost:8233 and http://127.0.0.1:8233.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="HARNESS_CODEC_TOKEN",
            show_default=False,
            help="Require 'Authorization: Bearer TOKEN' on /encode and /decode (prefer the variable: "
            "a flag shows in ps).",
        ),
    ] = None,
) -> None:
    """Decrypt for the Web UI and `temporal`: Temporal's codec endpoints (POST /encode, /decode)."""
    from activities.codec import CodecError, codec_from_env, describe
    from harness.codec_server import DEFAULT_ORIGINS, CodecServer

    try:
        codec = codec_from_env()
    except CodecError as error:
        _fail(str(error))
    if codec is None:
        _fail("no key configured: set HARNESS_CODEC_KEYS or HARNESS_CODEC_KEY_FILE (see README, Encryption)")
    assert codec is not None
    try:
        served = CodecServer(codec, host=host, port=port, origins=ui_origin or DEFAULT_ORIGINS, token=token)
    except OSError as error:
        _fail(f"cannot listen on {host}:{port}: {error.strerror}")
    console.print(describe(), highlight=False)
    console.print(
        f"codec server on {served.url} (POST /encode, /decode); CORS for {', '.join(served.origins)}; "
        + ("bearer token required" if served.requires_token else "no token"),
        highlight=False,
    )
    with contextlib.suppress(KeyboardInterrupt):
        served.serve_forever()


@app.command()
def sim(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    latency: Annotated[float, typer.Option(help="Seconds before the first token.")] = 0.0,
    tokens_per_s: Annotated[float, typer.Option(help="Streaming rate; 0 is unlimited.")] = 0.0,
) -> None:
    """Run the model simulator (OpenAI and Anthropic wire formats) in the foreground."""
    from harness.sim import SimConfig, SimServer

    server = SimServer(SimConfig(host=host, port=port, latency_s=latency, tokens_per_s=tokens_per_s))
    console.print(f"simulator on {server.url if hasattr(server, 'url') else port}: OpenAI base URL /v1")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


@app.command()
def worker(
    queues: Annotated[
        str | None,
        typer.Option(
            help="What this worker serves, any of jobs,models,tools (default HARNESS_WORKER_QUEUES, "
            "else all): jobs = workflows and small activities, models = model calls, tools = tool calls. "
            "A subset needs HARNESS_ROLE_QUEUES=1 on every worker."
        ),
    ] = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option(
            help="Seconds running activities get to finish after SIGTERM before they are handed back "
            "(default HARNESS_DRAIN_TIMEOUT_S, else 30)."
        ),
    ] = None,
) -> None:
    """Run a worker against the configured Temporal (TEMPORAL_* environment); SIGTERM drains it."""
    from datetime import timedelta

    from contracts.names import ROLE_QUEUES_ENV, ROLES
    from worker import WORKER_QUEUES_ENV, WorkerGroup, configure_logging, parse_roles, run_worker

    try:
        roles = parse_roles(queues if queues is not None else os.environ.get(WORKER_QUEUES_ENV))
    except ValueError as error:
        _fail(str(error), code=2)
    if roles != ROLES and os.environ.get(ROLE_QUEUES_ENV, "") != "1":
        _fail(
            f"--queues {','.join(roles)} needs {ROLE_QUEUES_ENV}=1 on every worker of the deployment: "
            "without it model and tool calls run on the jobs queue, with their job",
            code=2,
        )
    if drain_timeout is not None and drain_timeout < 0:
        _fail(f"--drain-timeout must be 0 or more seconds, not {drain_timeout:g}", code=2)
    drain = timedelta(seconds=drain_timeout) if drain_timeout is not None else None
    configure_logging()

    def ready(group: WorkerGroup) -> None:
        console.print(
            f"worker for jobs on task queue {group.task_queue!r} serving {', '.join(roles)} "
            f"(task queues {', '.join(group.queues)}); Ctrl-C to stop, SIGTERM to drain"
        )

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_worker(on_ready=ready, roles=roles, drain=drain))


def _progress_table(progress: JobProgress) -> Table:
    table = Table.grid(padding=(0, 2))
    step = progress.step or "-"
    if progress.steps_total:
        skipped = [g for g in progress.gates if g.kind == "before_step" and g.outcome == "rejected"]
        also = f", {len(skipped)} skipped at a gate" if skipped else ""
        step = f"{step} ({progress.steps_done}/{progress.steps_total} done{also})"
    table.add_row("status", Text(progress.status.value, style="bold"))
    table.add_row("step", step)
    table.add_row("calling", progress.in_flight or "-")
    table.add_row("spent", f"{progress.tokens} tokens, {_usd(progress.cost_usd)}")
    if progress.tool_calls:
        refused = (
            f", {progress.tool_calls_refused} refused (not the agent's)"
            if progress.tool_calls_refused
            else ""
        )
        table.add_row("tools", f"{plural(progress.tool_calls, 'call')}{refused}")
    if progress.paused:
        table.add_row("paused", "yes: `harness resume` to go on")
    for gate in progress.gates:
        if gate.outcome is None:
            table.add_row("gate", f"{gate.gate} waiting (default {gate.default} after {gate.timeout_s:g}s)")
        else:  # a tool gate's target holds the call's arguments: its tool's name is enough here
            target = gate.target.split(" ", 1)[0] if gate.kind == "tool" else gate.target
            table.add_row(
                "gate", f"{gate.gate} ({gate.kind.replace('_', ' ')} {target}): {gate.how_decided()}"
            )
    if progress.detail:
        table.add_row("note", progress.detail)
    if progress.signals_refused:
        table.add_row(
            "refused",
            f"{plural(progress.signals_refused, 'signal')} that did not decode; "
            f"last: {progress.last_refused_signal}",
        )
    return table


def _amount(tokens: int | None, usd: Decimal | None, calls: int | None, tool_calls: int | None = None) -> str:
    parts = []
    if tokens is not None:
        parts.append(f"{tokens:,} tok")
    if usd is not None:
        parts.append(_usd(usd))
    if calls is not None:
        parts.append(plural(calls, "call"))
    if tool_calls is not None:
        parts.append(plural(tool_calls, "tool call"))
    return ", ".join(parts) or "-"


def _tools(node: NodeView) -> str:
    """Tool calls used (spent and reserved) of the node's cap: '3/10'; '3' uncapped; '-' none."""
    used = node.spent.tool_calls + node.reserved.tool_calls
    if node.limits.tool_calls is not None:
        return f"{used}/{node.limits.tool_calls}"
    return str(used) if used else "-"


def budget_table(totals: LedgerTotals) -> Table:
    """Every budget node (job, agents, carved children): limits, spent, reserved, tool calls
    (used/limit), remaining."""
    table = Table(title="budget", title_justify="left", show_edge=False, pad_edge=False)
    for column in ("node", "limit", "spent", "reserved", "tools", "remaining", "notes"):
        table.add_column(column, justify="left" if column in ("node", "notes") else "right")
    depth: dict[str | None, int] = {None: -1}
    for node in totals.nodes:  # parents come before their children
        depth[node.id] = depth.get(node.parent, 0) + 1
        limit = _amount(node.limits.tokens, node.limits.usd, node.limits.calls)
        remaining = _amount(node.remaining.tokens, node.remaining.usd, node.remaining.calls)
        notes = []
        if node.quota is not None:
            q, u = node.quota, node.quota_used
            cap = _amount(q.tokens, q.usd, q.calls, q.tool_calls)
            tools = u.tool_calls if q.tool_calls is not None or u.tool_calls else None
            used = _amount(u.tokens, u.usd, u.calls, tools)
            notes.append(f"quota {used} of {cap} per {node.quota.period}")
        notes += [flag for flag in ("estimated", "overrun", "closed") if getattr(node, flag)]
        table.add_row(
            "  " * depth[node.id] + node.id,
            limit,
            _amount(node.spent.tokens, node.spent.usd, node.spent.calls),
            _amount(node.reserved.tokens, node.reserved.usd, None),
            _tools(node),
            remaining if remaining != "-" else "no cap",
            ", ".join(notes),
        )
    return table


_WHY_ESTIMATED = {
    "cut short": "calls cut short",
    "no usage reported": "usage the provider did not report",
    "worker lost": "attempts whose worker was lost",
    "failed mid-reply": "replies that broke off with an error",
}


def estimate_reasons(usage: Usage) -> str:
    """Why ``usage`` includes estimates, in words (older results carry no reasons)."""
    reasons = [_WHY_ESTIMATED.get(reason, reason) for reason in usage.estimated_for]
    return ", ".join(reasons) or "usage not reported in full"


def print_result(result: JobResult, url: str | None) -> None:
    """The end of a run: output, spend, stop reason and where to look (a failed job: no output,
    only why it failed)."""
    if result.stop_reason is not StopReason.failed:  # older results of failed jobs held the task
        console.print(Panel(result.output or "(no output)", title="result", expand=False))
    ledger = result.ledger
    usage = ledger.usage
    spent = (
        f"{plural(usage.total_tokens, 'token')} ({usage.input_tokens} in, {usage.output_tokens} out) "
        f"in {plural(ledger.calls, 'call')}, {_usd(ledger.cost_usd)}"
    )
    if ledger.tool_calls:
        spent += f"; {plural(ledger.tool_calls, 'tool call')}"
        if ledger.tool_cost_usd:
            spent += f" ({_usd(ledger.tool_cost_usd)} of the cost)"
    if usage.estimated:
        spent += f" (includes estimates: {estimate_reasons(usage)})"
    table = Table.grid(padding=(0, 2))
    table.add_row("stop reason", Text(result.stop_reason.value, style="bold"))
    if result.explanation:
        table.add_row("why", result.explanation)
    table.add_row("spent", spent)
    for note in ledger.degraded:
        table.add_row("budget", note)
    console.print(table)
    if result.routing:
        console.print(routing_section(result))
    if url:
        console.print(f"Temporal UI: {url}", soft_wrap=True, highlight=False)


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="Job spec, YAML or JSON.")],
    follow: Annotated[bool, typer.Option(help="Show live progress and wait for the result.")] = True,
    worker: Annotated[bool, typer.Option(help="Run a worker in this process.")] = True,
    tools: Annotated[
        Path | None,
        typer.Option(
            "--tools",
            help="Tool catalog (YAML) for the worker in this process; sets HARNESS_TOOLS. "
            "Tools the spec names are checked against it before the job starts.",
        ),
    ] = None,
    data_dir: DataDir = Path(".harness"),
) -> None:
    """Run a job, starting whatever is missing (server, simulator, worker); print its result."""
    from activities.catalog import load_catalog
    from activities.config import ProviderSettings
    from contracts.spec import SpecError
    from harness.runner import check_models, check_tools, run_job
    from harness.specfile import load_spec

    if tools is not None:
        os.environ[TOOLS_ENV] = str(tools)  # the in-process worker reads its catalog from here
    try:
        spec = load_spec(file)
        catalog_path = ProviderSettings.from_env().catalog_path
        try:
            catalog = load_catalog(catalog_path)
        except (ValueError, OSError) as error:  # the model catalog file: unreadable, a bad field
            raise SpecError(f"model catalog {catalog_path}: {error}") from None
        check_models(spec, catalog)
        check_tools(spec, os.environ.get(TOOLS_ENV), needed=worker)
    except SpecError as error:
        _fail(str(error), code=2)
    if not follow:
        _start_detached(spec)
        return
    if worker:  # the worker in this process logs to a file: this terminal shows the job
        from worker import configure_logging

        configure_logging(data_dir / "worker.log")
    view = WatchView(tokens=False)  # a terminal streams the reply; a pipe gets it once, at the end

    def on_start(job_id: str, url: str | None) -> None:
        console.print(f"job [bold]{job_id}[/] started" + (f"  {url}" if url else ""))
        view.__enter__()

    try:
        result, url = asyncio.run(
            run_job(
                spec,
                data_dir=data_dir,
                with_worker=worker,
                say=lambda line: console.print(f"[dim]{line}[/]"),
                on_start=on_start,
                on_event=view.show,
            )
        )
    except KeyboardInterrupt:
        view.__exit__()
        err.print("interrupted: the job stays in Temporal; a worker picks it up where it stopped")
        raise typer.Exit(130) from None
    except Exception as error:  # a clear message, not a traceback, for the expected failures
        view.__exit__()
        _fail(one_line_error(error) or f"{type(error).__name__}: {error}")
    view.__exit__()
    print_result(result, url)


def _start_detached(spec: Any) -> None:
    """Start the job and say what runs it: a worker polling its task queue, or none yet."""
    from activities.codec import describe
    from activities.connect import connect, task_queue
    from harness.client import has_pollers, start_job

    async def go() -> tuple[str, bool]:
        client = await connect()
        handle = await start_job(client, spec)
        return handle.id, await has_pollers(client, task_queue())

    console.print(f"[dim]{describe()}[/]")
    job_id, served = asyncio.run(go())
    console.print(f"started job {job_id}", highlight=False)
    if not served:
        console.print(
            f"no worker polls task queue {task_queue()!r}: the job waits until one runs there; "
            "start one with `harness worker` (same HARNESS_TASK_QUEUE)",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"follow it with `harness status {job_id}`; its result: `harness result {job_id}`",
        highlight=False,
        soft_wrap=True,
    )


@app.command("list")
def list_(
    status: Annotated[
        str | None,
        typer.Option(help="Only jobs in this status: starting, running, waiting, paused, finished, failed."),
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(
            help="Only jobs of this mode: sequential, groupchat, dag, delegation, team "
            "(or subtask, team-member)."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many, newest first.")] = 20,
    children: Annotated[
        bool, typer.Option("--children", help="Include child jobs (delegation subtasks, team members).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List jobs, newest first: mode, status, stop reason, tokens, cost and age (from the search
    attributes; spend lags a running job by up to 9 turns). Needs no worker."""
    import dataclasses

    from activities.connect import connect
    from harness.client import CHILD_MODES, list_jobs
    from workflows import WORKFLOW_FOR_MODE

    statuses = [s.value for s in JobStatus]
    modes = [*WORKFLOW_FOR_MODE, *CHILD_MODES]
    if status is not None and status not in statuses:
        _fail(f"unknown status {status!r}; one of: {', '.join(statuses)}", code=2)
    if mode is not None and mode not in modes:
        _fail(f"unknown mode {mode!r}; one of: {', '.join(modes)}", code=2)

    async def go() -> list[Any]:
        return await list_jobs(await connect(), status=status, mode=mode, limit=limit, children=children)

    rows = asyncio.run(go())
    if as_json:
        console.print_json(json.dumps([dataclasses.asdict(row) for row in rows], default=str))
        return
    if not rows:
        console.print("no jobs" + (" match" if status or mode else " yet"))
        return
    now = datetime.now(UTC)
    table = Table(box=None, padding=(0, 2), header_style="bold", pad_edge=False)
    for name, justify in (
        ("job", "left"),
        ("mode", "left"),
        ("status", "left"),
        ("stop reason", "left"),
        ("tokens", "right"),
        ("cost", "right"),
        ("age", "right"),
    ):
        # The id is what people copy into the next command: never cut or wrapped.
        widest = max(len(row.job_id) for row in rows) if name == "job" else None
        table.add_column(name, justify=justify, no_wrap=name == "job", min_width=widest)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(
            row.job_id,
            row.mode,
            row.status,
            row.stop_reason or "-",
            f"{row.tokens:,}" if row.tokens is not None else "-",
            f"${row.cost_usd:.4f}" if row.cost_usd is not None else "-",
            _age(now - row.started) if row.started is not None else "-",
        )
    console.print(table)


def _age(delta: timedelta) -> str:
    """``45s``, ``12m``, ``3h``, ``2d``."""
    seconds = max(0, int(delta.total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _query(job_id: str, name: str, result_type: Any) -> Any:
    from activities.connect import connect
    from harness.client import query_job

    async def go() -> Any:
        return await query_job(await connect(), job_id, name, result_type)

    return asyncio.run(go())


@app.command()
def status(
    job_id: JobId,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a job's status: step, in-flight call, spend, stop reason, and its budget per node."""
    from activities.connect import connect
    from harness.client import job_ledger, job_status

    async def go() -> tuple[JobProgress, LedgerTotals | None]:
        client = await connect()
        progress = await job_status(client, job_id)
        if progress.status is JobStatus.failed:
            return progress, None
        return progress, await job_ledger(client, job_id)

    progress, totals = asyncio.run(go())
    if as_json:
        console.print_json(progress.model_dump_json())
        return
    console.print(_progress_table(progress))
    if progress.stop_reason:
        console.print(f"stop reason: [bold]{progress.stop_reason.value}[/]")
    if totals is not None and totals.nodes:
        console.print(budget_table(totals))
        for note in totals.degraded:
            console.print(note, highlight=False)


@app.command()
def ledger(
    job_id: JobId,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole ledger as JSON.")] = False,
) -> None:
    """Show a job's spend: limits, spent, reserved and remaining per budget node, and per agent."""
    from activities.connect import connect
    from harness.client import job_ledger

    async def go() -> LedgerTotals:
        return await job_ledger(await connect(), job_id)

    totals = asyncio.run(go())
    if as_json:
        console.print_json(totals.model_dump_json())
        return
    console.print(budget_table(totals))
    for note in totals.degraded:
        console.print(note, highlight=False)
    for agent in {**totals.per_agent, **totals.per_agent_tool_calls}:
        usage = totals.per_agent.get(agent, Usage())
        cost = totals.per_agent_cost_usd.get(agent)
        tools = totals.per_agent_tool_calls.get(agent, 0)
        console.print(
            f"{agent}: {usage.total_tokens:,} tokens in {plural(usage.requests, 'call')}"
            + (f", {plural(tools, 'tool call')}" if tools else "")
            + (f", {_usd(cost)}" if cost is not None else "")
        )


def turn_panel(turn: TurnRecord) -> Panel:
    """One turn as ``harness transcript`` shows it: agent, model, tokens, the text, attempts lost
    before it, and its tool calls."""
    head = f"#{turn.index} {turn.agent} ({turn.model}) {turn.usage.total_tokens} tokens"
    if turn.usage.estimated:
        head += f" (estimated: {estimate_reasons(turn.usage)})"
    body = Text(turn.text)
    if turn.lost_usage is not None:  # so the turns add up to the ledger's calls
        lost = turn.lost_usage
        attempts = "1 earlier attempt" if lost.requests == 1 else f"{lost.requests} earlier attempts"
        body.append(
            ("\n" if body.plain else "")
            + f"{attempts} lost: {lost.input_tokens} in, {lost.output_tokens} out, "
            f"{'?' if turn.lost_cost_usd is None else _usd(turn.lost_cost_usd)} charged "
            f"(estimated: {estimate_reasons(lost)})",
            style="yellow",
        )
    for call in turn.tool_calls:
        # name, arguments, size, duration, outcome: one line per tool call the reply asked for
        cut = f", cut from {call.truncated_from:,}" if call.truncated_from is not None else ""
        line = (
            f"tool {call.name} {call.arguments[:120]} -> {call.outcome}, "
            f"{call.result_bytes:,} bytes{cut}, {call.duration_s:.2f}s"
        )
        body.append(("\n" if body.plain else "") + line, style="cyan" if call.outcome == "ok" else "yellow")
    return Panel(body, title=head, expand=False)


@app.command()
def transcript(
    job_id: JobId,
) -> None:
    """Print every turn of a job."""
    turns: list[TurnRecord] = _query(job_id, "transcript", list[TurnRecord])
    for turn in turns:
        console.print(turn_panel(turn))


@app.command()
def result(
    job_id: JobId,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Wait for a job's result and print it."""
    from activities.connect import connect
    from harness.client import job_result

    async def go() -> JobResult:
        return await job_result(await connect(), job_id)

    outcome = asyncio.run(go())
    if as_json:
        console.print_json(json.dumps(outcome.model_dump(mode="json")))
        return
    print_result(outcome, None)


register_controls(app)
app.add_typer(routing_app, name="routing")
app.add_typer(budget_app, name="budget")
app.add_typer(limits_app, name="limits")
app.command("watch")(watch_command)


def main() -> None:
    """Entry point of the ``harness`` script: run the command, then end the process without finalizing.

    Every failure ends in one line on stderr, ``error: ...``: a usage error (exit 2) as well as a
    failure outside harness (exit 1, see ``one_line_error``); only a bug of ours shows a traceback.

    The Temporal SDK's Rust core keeps Tokio threads that Python cannot stop (the SDK has no close or
    shutdown for a client or runtime). One of them hands each RPC's result to asyncio and may still
    be inside Python when the command returns; if it asks for the GIL again while the interpreter
    finalizes, the process dies with SIGSEGV or SIGABRT after its output was printed
    (temporalio/sdk-python#300). So the command's own clean-up runs as usual (``harness run`` stops
    the worker, simulator and dev server it started in ``finally`` blocks, inside the command), then
    what a normal exit does before finalizing (join non-daemon threads, atexit handlers, flush
    stdout and stderr), then ``os._exit`` ends the process with the command's exit code.
    """
    try:
        # Not standalone: click's usage errors come here, to be said in one line, not in a panel.
        code = _exit_code(app(standalone_mode=False))
    except SystemExit as done:
        code = _exit_code(done.code)
    except KeyboardInterrupt:
        code = 130
    except typer.TyperException as error:  # a bad option or argument, or a missing one
        # `harness` alone printed its help when it raised this; typer tells it by name too.
        if type(error).__name__ != "NoArgsIsHelpError":
            say_error(usage_line(error))
        code = error.exit_code
    except typer.Abort:  # end of input at a prompt
        code = 1
    except BaseException as error:  # not a click error: one line, or the traceback with HARNESS_DEBUG
        line = None if os.environ.get("HARNESS_DEBUG") else one_line_error(error)
        if line is None:
            sys.excepthook(*sys.exc_info())
        else:
            say_error(line)
        code = 1
    _exit_without_finalizing(code)


def usage_line(error: typer.TyperException) -> str:
    """A usage error in one line: click's message and where the command's help is."""
    context = getattr(error, "ctx", None)
    where = f" (see `{context.command_path} --help`)" if context is not None else ""
    return error.format_message().rstrip(".") + where


def one_line_error(error: BaseException) -> str | None:
    """What to tell the user, in one line, for a failure that is not a bug of ours (None: a bug,
    show the traceback). Set ``HARNESS_DEBUG=1`` for the traceback anyway."""
    from temporalio.client import WorkflowFailureError
    from temporalio.service import RPCError, RPCStatusCode

    from activities.codec import CodecError
    from harness.client import NoResult, NoSuchJob, NoWorker, ended_how, worker_missing

    address = os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233")
    if isinstance(error, (NoSuchJob, NoWorker, NoResult, CodecError)):
        return str(error)
    if isinstance(error, WorkflowFailureError):
        return f"the job has no result: {ended_how(error)}"
    encoding = _unreadable_encoding(error)
    if encoding is not None:
        return encoding
    if isinstance(error, RuntimeError) and "Failed client connect" in str(error):
        return (
            f"cannot reach Temporal at {address}: start one with `harness server` "
            "(or set TEMPORAL_ADDRESS to yours)"
        )
    if isinstance(error, RPCError):
        if error.status is RPCStatusCode.NOT_FOUND:
            return f"not found: {error.message}"
        if worker_missing(error) is not None:
            return f"no worker answered ({error.message}): is a worker running? Start `harness worker`"
        if error.status is RPCStatusCode.UNAVAILABLE:
            return f"Temporal at {address} is unavailable: {error.message}"
        return f"Temporal refused the request ({error.status.name}): {error.message}"
    return None


def _unreadable_encoding(error: BaseException) -> str | None:
    """What to say when ``error`` (or what caused it) is the data converter meeting a payload it
    cannot read: one sealed by harness's codec while no key is set here, or another encoding."""
    from activities.codec import ENCODING, KEY_FILE_ENV, KEYS_ENV

    seen: BaseException | None = error
    while seen is not None:
        message = str(seen.args[0]) if isinstance(seen, KeyError) and seen.args else ""
        if message.startswith("Unknown payload encoding"):
            encoding = message.removeprefix("Unknown payload encoding").strip()
            if encoding == ENCODING.decode():
                return (
                    f"the data is encrypted ({encoding}) and no key is set here: set {KEYS_ENV} "
                    f"(or {KEY_FILE_ENV}) to the keys the workers use (see README, Encryption)"
                )
            return f"a payload has encoding {encoding!r}, which harness cannot read"
        seen = seen.__cause__ or seen.__context__
    return None


def _exit_code(code: object) -> int:
    """The process exit code for ``SystemExit(code)``, printing a message code as Python does."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _exit_without_finalizing(code: int) -> NoReturn:
    """Do what interpreter shutdown does before finalizing, then ``os._exit(code)``."""
    try:
        main_thread = threading.main_thread()
        for thread in threading.enumerate():
            if thread is not main_thread and not thread.daemon:
                thread.join()
        atexit._run_exitfuncs()  # e.g. DevServer.stop registered as a safety net
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe (`harness ledger ID | head`) or stream
                code = code or 120  # what Python exits with when it cannot flush stdout
        os._exit(code)


if __name__ == "__main__":
    main()
