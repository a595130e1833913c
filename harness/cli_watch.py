"""``harness watch``: a job as it runs, tokens as the model writes them (also what ``harness run``
shows while it follows its job)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from contracts.jobs import JobProgress
from harness.cli_errors import fail

if TYPE_CHECKING:
    from harness.watch import WatchEvent

__all__ = ["WatchView", "watch"]

console = Console()


def _usd(value: Decimal) -> str:
    return f"${value:.4f}"


class WatchView:
    """Draws watch events on a terminal: replies stream above a live status block (step ticks,
    elapsed time, spend against the budget as a bar, the gate waiting and its commands); events
    print as lines as they happen. Without a terminal it writes plain text: the reply's characters
    as they come, an event per line (or, ``tokens=False``, only the events: ``harness run`` into a
    pipe prints the reply once, at the end)."""

    def __init__(self, out: Console | None = None, *, tokens: bool = True) -> None:
        self.console = out or console
        self.live_mode = self.console.is_terminal
        self.tokens = tokens or self.live_mode
        self.live: Live | None = Live(console=self.console, transient=True, refresh_per_second=8)
        if not self.live_mode:
            self.live = None
        self.progress: JobProgress | None = None
        self.started = time.monotonic()
        self.line = ""  # the reply's line being written (terminal)
        self.open_call: str | None = None
        self.job_id = ""

    def __enter__(self) -> WatchView:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._end_reply()
        if self.live is not None:
            self.live.stop()

    def show(self, event: WatchEvent) -> None:
        data = event.data
        kind = event.kind
        if kind == "started":
            self.job_id = data["job"]
            if data.get("started_at"):
                started = datetime.fromisoformat(data["started_at"])
                self.started = time.monotonic() - max(0.0, time.time() - started.timestamp())
        elif kind == "status":
            self.progress = JobProgress.model_validate(data)
        elif kind in ("call", "token", "reply") and not self.tokens:
            pass
        elif kind == "call":
            self._begin_reply(data["call"])
        elif kind == "token":
            if self.open_call != data["call"]:
                self._begin_reply(data["call"])
            if data.get("gap"):
                self._write(f" [… {data['gap']} characters …] ")
            self._write(data["text"])
        elif kind == "reply":
            if self.open_call == data["call"]:
                self._end_reply()
        else:
            self._end_reply()
            line = self._event_line(event)
            if line:
                self._print(Text(line, style="cyan"))
        if self.live is not None:
            self.live.update(self._status())

    def _event_line(self, event: WatchEvent) -> str | None:
        data = event.data
        lines = {
            "continued": lambda: f"continued as new (run {data['run']})",
            "child_started": lambda: f"child job {data['child']} started",
            "child_ended": lambda: f"child job {data['child']} ended",
            "interrupt": lambda: f"interrupt received ({data['count']} so far)",
            "degraded": lambda: f"budget: {data['note']}",
            "gate_opened": lambda: (
                f"gate {data['gate']} waiting for a decision: `{data['approve']}` or `{data['reject']}` "
                f"({data['default']} after {data['timeout_s']:g}s)"
            ),
            "gate_decided": lambda: (
                f"gate {data['gate']} {data['outcome']}" + (f" by {data['by']}" if data.get("by") else "")
            ),
            "no_worker": lambda: (
                f"no worker polls task queue {data['task_queue']!r}: start one with `harness worker`"
            ),
            "worker_back": lambda: f"a worker serves task queue {data['task_queue']!r} again",
        }
        make = lines.get(event.kind)
        return make() if make is not None else None

    # --- replies ---------------------------------------------------------------------------

    def _begin_reply(self, call: str) -> None:
        self._end_reply()
        self.open_call = call
        who = self.progress.in_flight if self.progress is not None and self.progress.in_flight else call
        self._print(Text(f"── {who}", style="dim"))

    def _end_reply(self) -> None:
        if self.open_call is None:
            return
        if self.live_mode:
            if self.line:
                self._print(Text(self.line))
        else:
            sys.stdout.write("\n")
            sys.stdout.flush()
        self.line = ""
        self.open_call = None

    def _write(self, text: str) -> None:
        if not self.live_mode:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        *done, self.line = (self.line + text).split("\n")
        for line in done:
            self._print(Text(line))

    def _print(self, renderable: RenderableType) -> None:
        if self.live_mode or not isinstance(renderable, Text):
            self.console.print(renderable, highlight=False)
        else:
            self.console.print(renderable.plain, highlight=False, soft_wrap=True)

    # --- the status block ------------------------------------------------------------------

    def _status(self) -> RenderableType:
        rows: list[RenderableType] = []
        if self.line:
            rows.append(Text(self.line + "▌"))
        p = self.progress
        grid = Table.grid(padding=(0, 2))
        elapsed = f"{time.monotonic() - self.started:,.1f}s"
        if p is None:
            grid.add_row("status", f"waiting for the job to answer · {elapsed}")
            return Group(*rows, grid)
        where = p.step or "-"
        if p.steps_total:
            ticks = "●" * p.steps_done + "○" * max(0, p.steps_total - p.steps_done)
            where = f"{where} {ticks} {p.steps_done}/{p.steps_total}"
        if p.round:
            where += f" · round {p.round}"
        grid.add_row("status", Text(f"{p.status.value} · {elapsed}", style="bold"))
        grid.add_row("step", where)
        grid.add_row("calling", p.in_flight or "-")
        grid.add_row("spent", _spend(p))
        for gate in p.gates:
            if gate.outcome is None:
                grid.add_row(
                    "gate",
                    f"{gate.gate} waiting: harness approve|reject {p.job_id} {gate.gate} "
                    f"({gate.default} after {gate.timeout_s:g}s)",
                )
        if p.paused:
            grid.add_row("paused", f"yes: `harness resume {p.job_id}` to go on")
        if p.detail:
            grid.add_row("note", p.detail)
        return Group(*rows, grid)


def _spend(p: JobProgress) -> RenderableType:
    """Spend as text, with a bar against the job's cap (USD first, else tokens) when it has one."""
    said = f"{p.tokens:,} tokens, {_usd(p.cost_usd)}"
    if p.limit_usd:
        total, done = float(p.limit_usd), float(p.cost_usd)
        said += f" of {_usd(p.limit_usd)}"
    elif p.limit_tokens:
        total, done = float(p.limit_tokens), float(p.tokens)
        said += f" of {p.limit_tokens:,} tokens"
    else:
        return said
    table = Table.grid(padding=(0, 1))
    table.add_row(ProgressBar(total=total, completed=min(done, total), width=24), said)
    return table


def watch(
    job_id: Annotated[str, typer.Argument(help="Job id (= workflow id).")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON event per line, for scripts.")] = False,
) -> None:
    """Follow a job live: the reply's tokens as they are written, step, elapsed time, spend against
    the budget, and events (interrupt, gate and the command that decides it, degrade,
    continue-as-new, child jobs) as they happen; ends when the job does. Costs the job no history."""
    from activities.connect import connect, untraced
    from harness.watch import watch as events

    async def go() -> dict[str, Any]:
        client = untraced(await connect())  # polls several times a second: not a trace each
        ended: dict[str, Any] = {}
        if as_json:
            async for event in events(client, job_id):
                print(json.dumps(event.as_json(), default=str), flush=True)
                ended = event.data if event.kind == "ended" else ended
            return ended
        with WatchView() as view:
            async for event in events(client, job_id):
                view.show(event)
                ended = event.data if event.kind == "ended" else ended
        return ended

    try:
        ended = asyncio.run(go())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if as_json:
        return
    if "error" in ended:
        fail(f"job {job_id} has no result: {ended['error']}")
    from contracts.jobs import JobResult
    from harness.cli import print_result

    print_result(JobResult.model_validate(ended["result"]), None)
