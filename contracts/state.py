"""What continue-as-new carries: the state of a job between two turns."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from contracts.jobs import GateRecord, LedgerTotals, TurnRecord
from contracts.models import ModelInfo
from policies.convergence import ConvergenceMonitor
from policies.goals import GoalVerdict
from policies.ledger import Ledger
from policies.scheduling import AgingPriorityQueue, FairShare, RoundRobin


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
