"""How a job shows in the Temporal Web UI before it has run a step: its static summary and details.

Both are set when the job's workflow starts (by ``harness.client.start_job``, and by the modes for
the child jobs they start) and never change. They are user metadata in the workflow's history, so
they go through the payload codec (sealed when a key is set) like the spec they are made of; the
spec holds no keys, and nothing else goes in.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from contracts.spec import BudgetLimits, BudgetSpec, JobSpec, QuotaSpec

__all__ = ["job_details", "job_summary", "preview", "timer_at"]

SUMMARY_TASK_CHARS = 60
DETAILS_TASK_CHARS = 400


def preview(text: str, limit: int) -> str:
    """``text`` on one line (runs of whitespace as one space), cut to ``limit`` characters with '…'."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def job_summary(spec: JobSpec, role: str | None = None) -> str:
    """One line: the mode (after ``role``, a child's place in its parent: 'subtask s1 (round 1)'),
    the start of the task, and the budget's limits."""
    head = f"{role} · {spec.mode}" if role else spec.mode
    line = f"{head}: {preview(spec.task, SUMMARY_TASK_CHARS)}"
    limits = _limits(spec.budget) if spec.budget is not None else ""
    return f"{line} · budget {limits}" if limits else line


def job_details(spec: JobSpec) -> str:
    """A markdown list: name, mode and priority; agents and their models; budget, quota, account,
    deadline and gates when set; then the task, up to ``DETAILS_TASK_CHARS`` characters."""
    lines = [f"- **job** {spec.name or spec.id or '(unnamed)'}: mode {spec.mode}, priority {spec.priority}"]
    lines.append("- **agents** " + ", ".join(f"{agent.name} on {agent.model}" for agent in spec.agents))
    budget = spec.budget
    if budget is not None:
        lines.append(f"- **budget** {_limits(budget) or 'no limits'}; when spent: {_policy(budget)}")
        if budget.quota is not None:
            lines.append(f"- **quota** {_limits(budget.quota)} per {_duration(budget.quota.period)}")
    if spec.account:
        lines.append(f"- **account** {spec.account}")
    if spec.deadline is not None:
        lines.append(f"- **deadline** {_duration(spec.deadline)} from the start")
    if spec.gates:
        lines.append("- **gates** " + ", ".join(gate.name for gate in spec.gates))
    lines.append(f"- **task** {preview(spec.task, DETAILS_TASK_CHARS)}")
    return "\n".join(lines)


def timer_at(when: datetime) -> str:
    """A timer's end as its summary names it: UTC, to the second."""
    return f"{when:%Y-%m-%d %H:%M:%S} UTC"


def _limits(budget: BudgetLimits | QuotaSpec) -> str:
    parts = []
    if budget.tokens is not None:
        parts.append(f"{budget.tokens} tokens")
    if budget.usd is not None:
        parts.append(_usd(budget.usd))
    if budget.calls is not None:
        parts.append(f"{budget.calls} calls")
    if budget.tool_calls is not None:
        parts.append(f"{budget.tool_calls} tool calls")
    return ", ".join(parts)


def _policy(budget: BudgetSpec) -> str:
    if budget.on_exhausted != "ask":
        return budget.on_exhausted
    return f"ask (for {_duration(budget.ask_timeout)}, then {budget.ask_default})"


def _usd(amount: Decimal) -> str:
    cents = amount.quantize(Decimal("0.01"))
    return f"${cents}" if cents == amount else f"${amount.normalize():f}"


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s" if seconds < 60 else str(span)
