"""A job's whole state, as one model: what the workflow keeps and what continue-as-new carries.

A job workflow takes one input, ``JobInput``: its spec and, for a run started by continue-as-new,
the ``JobState`` the previous run left. The workflow keeps its state *in* that ``JobState`` (the
budget's ledger, the gates met, the inbox, the turns, a chat's conversation and turn policies), so
continuing as new hands the same object on: there is no separate snapshot to keep in step with it.
What is not in it is transient by construction: the call in flight and a pending gate, neither of
which exists at the turn boundary where a job continues as new.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from contracts.jobs import GateRecord, JobStatus, LedgerTotals, StopReason, TurnRecord
from contracts.models import Message, ModelInfo
from contracts.routing import RoutingRecord
from contracts.spec import JobSpec
from contracts.tools import ToolDef
from policies.convergence import ConvergenceMonitor
from policies.goals import GoalVerdict
from policies.ledger import Ledger
from policies.scheduling import AgingPriorityQueue, FairShare, RoundRobin
from policies.tokens import TokenSample


class BudgetState(BaseModel):
    """The budget of a job: its ledger (limits, spend, quota periods), the totals view, the lease.

    ``totals`` is the ledger seen per agent with the input/output split the ledger does not keep;
    ``BudgetKeeper`` changes both together.
    """

    ledger: Ledger
    totals: LedgerTotals
    extra_seq: int = Field(default=0, ge=0, description="Ids already used for charges without a reservation.")
    lease: Literal["none", "held", "returned"] = Field(
        default="none",
        description="The spec's budget account lease: a held lease is not taken again, only given back.",
    )


class GatesState(BaseModel):
    """The approval gates met so far (a pending gate is not state: no job continues as new at one)."""

    records: list[GateRecord] = Field(default_factory=list)
    withheld: bool = Field(default=False, description="A rejected final gate withheld the output.")


class TerminationState(BaseModel):
    """Goal and convergence bookkeeping of a looping mode, including the best output so far."""

    latest: dict[str, str] = Field(default_factory=dict, description="Each agent's latest output.")
    round_texts: list[tuple[str, str]] = Field(
        default_factory=list, description="(agent, text) of the round in progress."
    )
    last_verdict: GoalVerdict | None = None
    cost_at_round_start: Decimal = Decimal(0)
    monitor: ConvergenceMonitor | None = None


class ChainState(BaseModel):
    """A sequential chain's or a DAG's own part of the state: what the steps so far produced."""

    outputs: dict[str, str] = Field(default_factory=dict, description="Output per step id, so far.")
    previous: str = Field(
        default="", description="A chain's {input} for its next step: the last output (or the task)."
    )


class DelegationState(BaseModel):
    """A delegation's own part of the state, between two rounds: what the primary has said and what
    its subtasks gave, so a run started by continue-as-new goes on at the next round."""

    messages: list[Message] = Field(
        default_factory=list, description="The primary's conversation: the plan prompt, its plans, reviews."
    )
    next_round: int = Field(default=1, ge=1, description="The round the next run starts with.")
    results: dict[str, str] = Field(default_factory=dict, description="Subtask id -> its successful output.")
    failures: dict[str, str] = Field(
        default_factory=dict, description="Subtask id -> why its latest run failed."
    )
    titles: dict[str, str] = Field(default_factory=dict, description="Subtask id -> its title.")
    attempts: dict[str, int] = Field(default_factory=dict, description="Subtask id -> runs started.")
    order: dict[str, int] = Field(
        default_factory=dict, description="Subtask id -> first-seen position, for the worker rotation."
    )
    failed_runs: list[str] = Field(default_factory=list, description="Child workflow ids that failed.")


class MemberState(BaseModel):
    """A team member's own part of the state: what it has done, and whether its board has closed."""

    requests: int = Field(
        default=0, ge=0, description="Claims made so far: their keys go on across runs, so none is reused."
    )
    closed: bool = Field(default=False, description="The coordinator signalled 'close'.")
    outputs: dict[str, str] = Field(default_factory=dict, description="Task id -> this member's result.")


class ChatState(BaseModel):
    """A group chat: the conversation, who speaks next, where the round stands."""

    conversation: list[tuple[str, str]] = Field(description="(speaker, text), the opening first.")
    rotation: RoundRobin
    fair: FairShare
    termination: TerminationState = Field(default_factory=TerminationState)
    round: int = Field(default=1, ge=1, description="The round in progress.")
    turns_in_round: int = Field(default=0, ge=0, description="Turns of that round already taken.")


class JobState(BaseModel):
    """Everything a job is, between two turns, in every mode (a chat's own part in ``chat``).

    A new job starts from ``JobState()``; a run started by continue-as-new starts from the state the
    previous run left, so nothing is resolved or leased again, call ids go on from ``call_seq`` and
    the deadline still counts from ``started_at``, the job's first start. A parent may start a child
    with ``models`` already filled in, so the child resolves nothing.
    """

    started_at: datetime | None = Field(
        default=None, description="When the job's first run started (the deadline's origin)."
    )
    models: dict[str, ModelInfo] = Field(
        default_factory=dict, description="Resolved models by spec reference; empty until resolved."
    )
    turns: list[TurnRecord] = Field(default_factory=list)
    call_seq: int = Field(default=0, ge=0, description="Model calls numbered so far (call ids are job_id/N).")
    budget: BudgetState | None = Field(default=None, description="None until the job's budget is set up.")
    gates: GatesState = Field(default_factory=GatesState)
    inbox: AgingPriorityQueue = Field(
        default_factory=AgingPriorityQueue, description="Interrupt and inject messages not yet delivered."
    )
    interrupts_received: int = 0
    signals_refused: int = Field(default=0, description="Signals whose payload could not be decoded.")
    last_refused_signal: str | None = None
    priority: int | None = Field(default=None, description="set_priority on task 'job'; None: the spec's.")
    paused: bool = False
    abort_reason: str | None = None
    status: JobStatus = JobStatus.starting
    stop_reason: StopReason | None = None
    step: str | None = None
    steps_done: int = 0
    steps_total: int | None = None
    round: int = 0
    detail: str = Field(default="", description="The one-line note 'status' shows.")
    evidence: dict[str, Any] = Field(default_factory=dict)
    check_errors: list[str] = Field(
        default_factory=list,
        description="Checks that could not be evaluated (scored 0), one line each: shown in the "
        "stop explanation and in the evidence.",
    )
    check_error_count: int = Field(default=0, ge=0, description="All of them (only the first 20 are kept).")
    routing: list[RoutingRecord] = Field(
        default_factory=list, description="One record per routed turn (and per adopted child's)."
    )
    calibration: dict[str, TokenSample] = Field(
        default_factory=dict,
        description="Estimated against reported tokens per provider model, from settled calls: "
        "what usage a provider does not report is estimated with.",
    )
    chat: ChatState | None = None
    chain: ChainState | None = Field(default=None, description="A chain's or a DAG's outputs so far.")
    delegation: DelegationState | None = Field(default=None, description="A delegation's rounds so far.")
    member: MemberState | None = Field(default=None, description="A team member's tasks so far.")
    tools: dict[str, list[ToolDef]] = Field(
        default_factory=dict,
        description="The tools each reference of the spec stands for, listed once at the job's start "
        "(an MCP server that changes its list mid-job changes nothing here).",
    )
    tool_seq: int = Field(default=0, ge=0, description="Tool calls numbered so far (ids are job_id/tN).")
    tool_calls_refused: int = Field(default=0, ge=0, description="Calls of tools the agent may not use.")
    payload_limit: int | None = Field(
        default=None,
        description="The largest payload the job may write inline (bytes of JSON), as the worker that "
        "resolved its models said; None: no limit (its worker stores large payloads outside history).",
    )
    role_queues: bool = Field(
        default=False,
        description="Model and tool calls go to their roles' own task queues (the resolving worker "
        "said so: ``ResolveModelsResult.role_queues``); a rate-limited provider's or MCP server's "
        "calls go to its own queue either way.",
    )


class JobInput(BaseModel):
    """The one input of every job workflow: the spec and, after continue-as-new, the state so far.

    A bare spec is accepted too (``harness run``, ``temporal workflow start --input spec.json`` and
    the histories recorded before this input existed all send one): it means a new job.
    """

    spec: JobSpec
    state: JobState | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_spec(cls, data: Any) -> Any:
        if isinstance(data, JobSpec):
            return {"spec": data}
        if isinstance(data, dict) and "spec" not in data:
            return {"spec": data}
        return data
