"""Wire types of a job as clients see it: status, stop reason, turns, ledger totals, gates, result."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from contracts.models import FinishReason, Usage
from contracts.routing import RoutingRecord
from contracts.tools import ToolOutcome
from policies.ledger import NodeView


class StopReason(StrEnum):
    """Why a job ended. One enum for every mode; also the ``HarnessStopReason`` search attribute."""

    completed = "completed"  # every step ran; no goal was declared to judge it against
    goal_met = "goal_met"
    budget_exhausted = "budget_exhausted"
    livelock = "livelock"
    plateau = "plateau"
    not_worth_it = "not_worth_it"
    deadline = "deadline"
    max_rounds = "max_rounds"
    aborted = "aborted"
    failed = "failed"
    payload_too_large = "payload_too_large"  # a call's input or the carried state over Temporal's limit


class JobStatus(StrEnum):
    """Coarse state of a job, as the ``HarnessStatus`` search attribute shows it."""

    starting = "starting"
    running = "running"
    waiting = "waiting"  # on a quota period, an approval gate or a budget request
    paused = "paused"
    finished = "finished"
    failed = "failed"


class ToolCallRecord(BaseModel):
    """One tool call a model asked for, and how it ended: the transcript's entry for it."""

    call_id: str = Field(description="'<job>/t<N>': the tool call's own id in the job.")
    name: str = Field(description="The tool's name as the model called it.")
    ref: str | None = Field(default=None, description="Its reference in the spec; None: not the agent's.")
    arguments: str = Field(default="", description="The arguments as JSON text, as the model sent them.")
    outcome: ToolOutcome
    result_bytes: int = Field(default=0, description="Size of the result the model was given, in bytes.")
    truncated_from: int | None = Field(default=None, description="The result's size before it was cut.")
    result_preview: str = ""
    duration_s: float = 0.0
    started_at: datetime | None = None


class TurnRecord(BaseModel):
    """One model call as the job's ledger and transcript keep it."""

    index: int
    call_id: str
    agent: str
    step: str | None
    model: str
    provider: str
    prompt_preview: str = ""
    text: str
    usage: Usage
    cost_usd: Decimal | None
    finish_reason: FinishReason = "stop"
    started_at: datetime
    ended_at: datetime
    routing: dict[str, Any] | None = Field(
        default=None,
        description="For a routed step: its role ('call' or 'check'), rung, and the routing decision "
        "(policies.routing.RoutingDecision as JSON) with its one-line summary.",
    )
    error: str | None = Field(
        default=None,
        description="Why the call failed (finish reason 'error'): its type and message; its known "
        "usage, re-asks included, is charged all the same.",
    )
    tool_calls: list[ToolCallRecord] = Field(
        default_factory=list, description="The tool calls this reply asked for, and how each ended."
    )
    lost_usage: Usage | None = Field(
        default=None,
        description="Earlier attempts of this call that ended without an answer (their worker died "
        "after sending the request, or a reply broke off): charged on top of ``usage``, estimated, "
        "``estimated_for`` says why, ``requests`` counts them. The turn's calls in the ledger are "
        "``usage.requests`` plus these.",
    )
    lost_cost_usd: Decimal | None = Field(default=None, description="What ``lost_usage`` was charged.")


class LedgerTotals(BaseModel):
    """Spend so far, as the ``ledger`` query reports it."""

    usage: Usage = Field(default_factory=Usage)
    cost_usd: Decimal = Decimal(0)
    cost_known: bool = True
    calls: int = 0
    limit_tokens: int | None = None
    limit_usd: Decimal | None = None
    per_agent: dict[str, Usage] = Field(default_factory=dict)
    per_agent_cost_usd: dict[str, Decimal] = Field(default_factory=dict)
    limit_calls: int | None = None
    tool_calls: int = Field(default=0, description="Tool calls that ran; not in 'calls' (model calls).")
    limit_tool_calls: int | None = None
    per_agent_tool_calls: dict[str, int] = Field(default_factory=dict)
    tool_cost_usd: Decimal = Field(
        default=Decimal(0), description="What priced tools cost; part of 'cost_usd' (and per_agent_cost_usd)."
    )
    nodes: list[NodeView] = Field(
        default_factory=list,
        description="Budget nodes ('job', 'agent:<name>', 'child:<id>'): limits, spent, reserved, "
        "remaining; estimated charges (calls cut mid-flight, failed calls) are in 'spent'.",
    )
    degraded: list[str] = Field(default_factory=list, description="Each degrade the budget forced.")


GateKind = Literal["before_step", "spend", "before_final", "tool"]
GateOutcome = Literal["approved", "rejected", "aborted"]


class GateRecord(BaseModel):
    """One approval gate as it was met: when it opened, who decided what, when, and why.

    ``by`` is who decided: the name the ``approve`` / ``reject`` update carried, ``timeout`` when the
    gate's default was taken, ``abort`` when an abort signal ended the wait, ``deadline`` when the
    job's deadline did.
    """

    gate: str
    kind: GateKind
    target: str = Field(default="", description="The step, the spend threshold, or 'final'.")
    opened_at: datetime
    decided_at: datetime | None = None
    outcome: GateOutcome | None = None
    by: str = ""
    note: str = ""
    timeout_s: float = 0.0
    default: GateOutcome = "rejected"

    def how_decided(self) -> str:
        """How the gate was decided, in words: "rejected by alice", "rejected: nobody decided within
        600s" when its default was taken, "waiting" while pending."""
        if self.outcome is None:
            return "waiting"
        if self.by == "timeout":
            return f"{self.outcome}: nobody decided within {self.timeout_s:g}s"
        return f"{self.outcome} by {self.by}"


class ReplyTail(BaseModel):
    """The end of one recorded reply: a watcher completes a streamed reply from it."""

    call_id: str
    chars: int = Field(description="The reply's length in characters.")
    tail: str = Field(description="Its last characters.")


class JobProgress(BaseModel):
    """What the ``status`` query returns: enough to draw a progress line."""

    job_id: str
    mode: str
    status: JobStatus
    step: str | None = None
    steps_done: int = 0
    steps_total: int | None = None
    round: int = 0
    in_flight: str | None = Field(default=None, description="Agent and model of the running call.")
    tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    stop_reason: StopReason | None = None
    detail: str = ""
    paused: bool = False
    pending_gates: list[str] = Field(default_factory=list, description="Gates waiting for a person.")
    evidence: dict[str, Any] = Field(default_factory=dict, description="Numbers behind the stop reason.")
    gates: list[GateRecord] = Field(default_factory=list, description="Gates met so far, pending ones too.")
    priority: int = Field(default=3, description="The running work's priority (0 is most urgent).")
    interrupts: int = Field(default=0, description="Interrupt signals received so far.")
    queued_messages: int = Field(default=0, description="Interrupt and inject messages not yet delivered.")
    tool_calls: int = Field(default=0, description="Tool calls the job's models asked for so far.")
    tool_calls_refused: int = Field(
        default=0, description="Of those, calls of a tool the agent may not use (not run)."
    )
    signals_refused: int = Field(default=0, description="Signals refused: their payload did not decode.")
    last_refused_signal: str | None = Field(default=None, description="The latest refusal: signal and why.")
    limit_tokens: int | None = Field(default=None, description="The job's token cap, if any.")
    limit_usd: Decimal | None = Field(default=None, description="The job's USD cap, if any.")
    degraded: list[str] = Field(default_factory=list, description="Each degrade the budget forced.")
    turns: int = Field(default=0, description="Model calls recorded so far (this run's transcript).")
    recent_replies: list[ReplyTail] = Field(
        default_factory=list, description="The ends of the latest turns' replies, oldest first."
    )


class JobResult(BaseModel):
    """What a job returns when it ends, whatever the mode."""

    job_id: str
    mode: str
    stop_reason: StopReason
    explanation: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict, description="Numbers behind the stop reason.")
    output: str
    outputs: dict[str, str] = Field(default_factory=dict, description="Per step or task, where it applies.")
    ledger: LedgerTotals
    turns: int
    routing: list[RoutingRecord] = Field(default_factory=list, description="Routed steps, in order.")
    gates: list[GateRecord] = Field(default_factory=list, description="Every gate met, with its decision.")
    # What ``harness status`` of an ended job shows, as the job ended (no worker is asked); results
    # written before these fields existed read with the defaults.
    priority: int | None = Field(
        default=None,
        description="The job's priority at its end (after any set_priority); None: not recorded.",
    )
    interrupts: int = Field(default=0, description="Interrupt signals the job received.")
    steps_done: int | None = Field(
        default=None, description="Steps or tasks done, skipped ones included; None: not recorded."
    )
    steps_total: int | None = None
    tool_calls: int = Field(default=0, description="Tool calls the job's models asked for.")
    tool_calls_refused: int = Field(default=0, description="Of those, calls of a tool the agent may not use.")
