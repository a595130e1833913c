"""Wire types of budget accounts (``workflows.account``): leases, give-backs, top-ups, views."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel, Field


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
    weight: float = Field(
        default=1.0,
        gt=0,
        le=1000,
        description="Fairness weight of the account's jobs on a shared task queue (Temporal fairness): "
        "while jobs of two accounts wait, they are dispatched in proportion to their weights.",
    )
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
