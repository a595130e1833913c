"""Wire types shared by workflows, activities and clients.

Every workflow and activity takes one of these pydantic models and returns one. They travel through
Temporal's history as JSON (``pydantic_data_converter``), so they hold no secrets and no clients.

Token fields nest like this (the same convention as pydantic-ai and genai-prices):

- ``input_tokens`` counts *every* input token, cached or not; ``cache_read_tokens`` and
  ``cache_write_tokens`` are parts of it, never added on top.
- ``output_tokens`` counts every generated token; ``reasoning_tokens`` is a part of it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from policies.convergence import ConvergenceMonitor
from policies.goals import GoalVerdict
from policies.ledger import Ledger, NodeView
from policies.routing import RoutingStats
from policies.scheduling import AgingPriorityQueue, FairShare, RoundRobin

# Names of things that running histories refer to: never rename after release.
TASK_QUEUE = "harness"
MODEL_CALL_ACTIVITY = "harness.model_call"
RESOLVE_MODELS_ACTIVITY = "harness.resolve_models"
ROUTING_STATS_ACTIVITY = "harness.routing_stats"
ROUTING_STATS_WORKFLOW_ID = "harness-routing-stats"


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


class JobStatus(StrEnum):
    """Coarse state of a job, as the ``HarnessStatus`` search attribute shows it."""

    starting = "starting"
    running = "running"
    waiting = "waiting"  # on a quota period, an approval gate or a budget request
    paused = "paused"
    finished = "finished"
    failed = "failed"


class Usage(BaseModel):
    """Tokens of one request, or the sum of many (``requests`` counts them).

    ``input_tokens`` includes ``cache_read_tokens`` and ``cache_write_tokens``;
    ``output_tokens`` includes ``reasoning_tokens``. ``estimated`` is true when any part of the
    figure is our own estimate rather than the provider's report (a call cut mid-stream, say).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens (cached and reasoning tokens are already inside them)."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            requests=self.requests + other.requests,
            estimated=self.estimated or other.estimated,
        )


class ModelPrice(BaseModel):
    """USD per million tokens. Cache prices default to the input price when a provider has none."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cache_read_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None

    def cost(self, usage: Usage) -> Decimal:
        """Exact cost of ``usage`` at this price."""
        cache_read = self.cache_read_per_mtok if self.cache_read_per_mtok is not None else self.input_per_mtok
        cache_write = (
            self.cache_write_per_mtok if self.cache_write_per_mtok is not None else self.input_per_mtok
        )
        plain_input = usage.input_tokens - usage.cache_read_tokens - usage.cache_write_tokens
        total = (
            plain_input * self.input_per_mtok
            + usage.cache_read_tokens * cache_read
            + usage.cache_write_tokens * cache_write
            + usage.output_tokens * self.output_per_mtok
        )
        return total / Decimal(1_000_000)


class ModelInfo(BaseModel):
    """A model reference resolved against the catalog: who serves it, what it costs, its limits."""

    ref: str = Field(description="What the spec said: 'sim:writer', 'openai:gpt-4o-mini', or an alias.")
    provider: Literal["sim", "openai", "anthropic", "openai-compatible"]
    model: str = Field(description="The provider's own model name.")
    tier: int = Field(default=1, description="0 is cheapest; higher tiers are stronger and dearer.")
    context_window: int = 128_000
    max_output_tokens: int = 4_096
    price: ModelPrice
    price_source: Literal["genai-prices", "catalog", "simulator"] = "genai-prices"


class Message(BaseModel):
    """One message of a conversation sent to a model."""

    role: Literal["user", "assistant"]
    content: str
    name: str | None = Field(default=None, description="Which agent said it, in multi-agent modes.")


class ModelCallRequest(BaseModel):
    """Input of the model-call activity: one model call, fully described, no secrets."""

    call_id: str = Field(description="Unique per call in the job; the idempotency key of its charge.")
    job_id: str
    agent: str
    step: str | None = None
    model: ModelInfo
    system: str = ""
    messages: list[Message]
    max_output_tokens: int
    temperature: float | None = None
    output_type: str | None = Field(
        default=None,
        description="Name of a registered output model (harness.outputs) the reply must be JSON of.",
    )
    structured_retries: int = Field(default=2, description="Re-asks with the error fed back.")
    stream: bool = True


FinishReason = Literal["stop", "length", "refusal", "content_filter", "cancelled"]


class ModelCallResult(BaseModel):
    """Output of the model-call activity: text, usage and its price."""

    call_id: str
    text: str
    usage: Usage
    cost_usd: Decimal | None = Field(description="None means unknown, never silently zero.")
    model: str
    provider: str
    finish_reason: FinishReason = "stop"
    parsed: Any = Field(default=None, description="The validated JSON, when an output type was asked for.")
    latency_s: float = 0.0
    lost_usage: Usage | None = Field(
        default=None,
        description="Estimated usage of earlier attempts of this call that died mid-stream "
        "(read from their last heartbeat); charged as estimated, never as zero.",
    )


class ResolveModelsRequest(BaseModel):
    """Input of the resolve-models activity: model references as written in a spec."""

    refs: list[str]


class ResolveModelsResult(BaseModel):
    """Each reference resolved, with its price; unknown prices are refused, never free."""

    models: dict[str, ModelInfo]


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


class RoutingAttempt(BaseModel):
    """One rung of a routed step: the model called, its check, and what each cost."""

    model: str
    call_id: str
    passed: bool | None = Field(default=None, description="None: the output was not checked.")
    check: str = Field(default="", description="The checks' verdict in one line.")
    cost_usd: Decimal | None = None
    check_cost_usd: Decimal = Decimal(0)


class RoutingRecord(BaseModel):
    """How one routed step chose its models: the router's final decision and every attempt."""

    step: str
    kind: str
    summary: str = Field(description="RoutingDecision.summary() after the last attempt.")
    decision: dict[str, Any] = Field(description="policies.routing.RoutingDecision as JSON.")
    attempts: list[RoutingAttempt] = Field(default_factory=list)
    outcome: Literal["passed", "failed", "unchecked", "refused"]


class RoutingOutcome(BaseModel):
    """One checked output: did ``model``'s output on a ``kind`` task pass its check."""

    kind: str
    model: str
    passed: bool


class RoutingOutcomes(BaseModel):
    """Input of the routing-stats ``record`` update and activity; no outcomes is a plain read.

    ``key`` makes a batch idempotent: a retried batch with a key already counted is ignored.
    """

    key: str = ""
    outcomes: list[RoutingOutcome] = Field(default_factory=list)


class RoutingStatsState(BaseModel):
    """What the routing-stats workflow carries through continue-as-new and answers to ``stats``."""

    stats: RoutingStats = Field(default_factory=RoutingStats)
    batches: int = Field(default=0, description="Batches with outcomes recorded, in this and earlier runs.")
    keys: list[str] = Field(default_factory=list, description="Recent batch keys, oldest first.")


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
    nodes: list[NodeView] = Field(
        default_factory=list,
        description="Budget nodes ('job', 'agent:<name>', 'child:<id>'): limits, spent, reserved, "
        "remaining; estimated charges (calls cut mid-flight, failed calls) are in 'spent'.",
    )
    degraded: list[str] = Field(default_factory=list, description="Each degrade the budget forced.")


GateKind = Literal["before_step", "spend", "before_final"]
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


# ----- budget accounts (workflows.account) ------------------------------------------------------

BUDGET_ACCOUNT_ACTIVITY = "harness.budget_account"  # never rename: running histories refer to it
ACCOUNT_REAP_ACTIVITY = "harness.budget_account_reap"
ACCOUNT_WORKFLOW = "BudgetAccount"


def account_workflow_id(name: str) -> str:
    """The workflow id of budget account ``name``."""
    return f"account-{name}"


class AccountLease(BaseModel):
    """What one job holds of an account: its whole budget, until it gives back the unused part."""

    job_id: str
    tokens: int | None = None
    usd: Decimal | None = None
    period: int = Field(description="Index of the period the lease was taken in.")
    at: datetime


class AccountState(BaseModel):
    """A budget account: caps per period, this period's spend, open leases. Carried through
    continue-as-new whole, so nothing is lost across it.

    Available this period = cap + this period's top-ups - settled spend - open leases. Periods
    start at the account's creation and reset the settled spend and top-ups; an open lease keeps
    holding its amount until the job gives it back.
    """

    name: str
    tokens: int | None = Field(default=None, description="Cap per period; None: no token cap.")
    usd: Decimal | None = Field(default=None, description="Cap per period; None: no dollar cap.")
    period: timedelta | None = Field(default=None, description="None: one period that never resets.")
    anchor: datetime | None = Field(default=None, description="When period 0 started; set on first run.")
    period_index: int = 0
    topup_tokens: int = Field(default=0, description="Added to this period's cap by topup.")
    topup_usd: Decimal = Decimal(0)
    spent_tokens: int = Field(default=0, description="Given back as spent this period.")
    spent_usd: Decimal = Decimal(0)
    lifetime_tokens: int = 0
    lifetime_usd: Decimal = Decimal(0)
    leases: dict[str, AccountLease] = Field(default_factory=dict, description="Open leases by job id.")
    closed: list[str] = Field(default_factory=list, description="Recent job ids given back (idempotency).")
    runs: int = Field(default=1, description="Runs of the workflow: 1 + continue-as-new count.")
    updates_per_run: int = Field(default=1000, gt=0, description="Continue as new after this many updates.")
    reap_every: timedelta = Field(
        default=timedelta(minutes=10),
        description="How often open leases are checked against their jobs: a job that ended without "
        "giving back (terminated, cancelled through Temporal) is charged its whole lease.",
    )
    reaped: list[str] = Field(default_factory=list, description="Recent leases charged whole by the check.")


class AccountView(BaseModel):
    """What the account's ``show`` query returns: the state and what is left this period."""

    state: AccountState
    leased_tokens: int = 0
    leased_usd: Decimal = Decimal(0)
    remaining_tokens: int | None = None
    remaining_usd: Decimal | None = None
    next_reset: datetime | None = None


class LeaseRequest(BaseModel):
    """Update ``lease``: hold ``tokens`` / ``usd`` for ``job_id``; refused when it does not fit."""

    job_id: str
    tokens: int | None = None
    usd: Decimal | None = None


class LeaseReply(BaseModel):
    """Whether the lease was granted, why not, and the account after it."""

    granted: bool
    reason: str = ""
    view: AccountView


class GiveBackRequest(BaseModel):
    """Update ``give_back``: the job ended having spent this much; the rest of its lease returns."""

    job_id: str
    tokens_spent: int = 0
    usd_spent: Decimal = Decimal(0)


class TopupRequest(BaseModel):
    """Update ``topup``: raise this period's caps."""

    tokens: int = 0
    usd: Decimal = Decimal(0)


class ReapRequest(BaseModel):
    """Input of the ``harness.budget_account_reap`` activity: jobs holding a lease."""

    job_ids: list[str]


class ReapReply(BaseModel):
    """Which of those jobs are no longer running (closed, or unknown to the server)."""

    ended: list[str] = Field(default_factory=list)


class AccountCall(BaseModel):
    """Input of the ``harness.budget_account`` activity: one lease or give-back on account ``account``."""

    account: str
    lease: LeaseRequest | None = None
    give_back: GiveBackRequest | None = None


# ----- continue-as-new -----------------------------------------------------------------------------


class BudgetCarry(BaseModel):
    """A ``BudgetKeeper`` between calls: the ledger, the totals and the account lease."""

    ledger: Ledger
    totals: LedgerTotals
    extra_seq: int = Field(ge=0, description="Ids already used for charges without a reservation.")
    lease: Literal["none", "held", "returned"] = Field(
        description="The spec's budget account lease: a held lease is not taken again, only given back."
    )


class GatesCarry(BaseModel):
    """The approval gates met so far (none pending: a job never continues as new at a gate)."""

    records: list[GateRecord] = Field(default_factory=list)
    withheld: bool = False


class TerminationCarry(BaseModel):
    """Goal and convergence bookkeeping of a looping mode, including the best output so far."""

    latest: dict[str, str] = Field(default_factory=dict, description="Each agent's latest output.")
    round_texts: list[tuple[str, str]] = Field(
        default_factory=list, description="(agent, text) of the round in progress."
    )
    last_verdict: GoalVerdict | None = None
    cost_at_round_start: Decimal = Decimal(0)
    monitor: ConvergenceMonitor | None = None


class ChatCarry(BaseModel):
    """A group chat between two turns: the conversation, who speaks next, where the round stands."""

    conversation: list[tuple[str, str]] = Field(description="(speaker, text), the opening first.")
    rotation: RoundRobin
    fair: FairShare
    termination: TerminationCarry
    round: int = Field(ge=1, description="The round in progress.")
    turns_in_round: int = Field(ge=0, description="Turns of that round already taken.")


class JobCarry(BaseModel):
    """Everything a job's next run needs after ``continue_as_new``, so that nothing is lost.

    Taken between two turns (no call in flight, no gate pending, not paused): the base state of
    ``JobWorkflow`` plus the mode's own (``chat`` for a group chat). The next run restores it instead
    of starting over: models are not resolved again, no budget is leased again, call ids go on from
    ``call_seq`` and the deadline still counts from ``started_at``, the job's first start.
    """

    started_at: datetime = Field(description="When the job's first run started (the deadline's origin).")
    models: dict[str, ModelInfo] = Field(description="Models resolved by the first run, by spec reference.")
    turns: list[TurnRecord] = Field(default_factory=list)
    call_seq: int = Field(ge=0, description="Model calls numbered so far (call ids are job_id/N).")
    budget: BudgetCarry
    gates: GatesCarry
    inbox: AgingPriorityQueue = Field(description="Interrupt and inject messages not yet delivered.")
    interrupts_received: int = 0
    priority: int | None = None
    paused: bool = False
    abort_reason: str | None = None
    step: str | None = None
    steps_done: int = 0
    round: int = 0
    detail: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)
    chat: ChatCarry | None = None
