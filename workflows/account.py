"""The long-lived ``BudgetAccount`` workflow: one budget per team or tenant, shared by many jobs.

One instance per account (id ``account-<name>``, see ``harness budget create``). A job whose spec
names ``account:`` leases its whole budget (``budget.tokens`` / ``budget.usd``) before its first
call, through the ``harness.budget_account`` activity, and gives back what it did not spend when it
ends; a lease that does not fit is refused and the job stops with ``budget_exhausted``.

- updates ``lease``, ``give_back``, ``topup`` (all idempotent per job id where it matters: a retried
  activity never leases or charges twice); query ``show``;
- periods (``--period day``) start at the account's creation; each one resets the settled spend and
  the top-ups, on a durable timer, while open leases keep holding their amounts;
- every ``reap_every`` (10 minutes) while leases are open it checks their jobs (activity
  ``harness.budget_account_reap``): a job that ended without giving back (terminated, or cancelled
  through Temporal rather than ``abort``) is charged its whole lease, as its spend is unknown;
- it runs forever: when Temporal suggests continue-as-new, or after ``updates_per_run`` updates, it
  waits for running handlers to finish and continues as new carrying its whole state.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.accounts import (
        AccountLease,
        AccountState,
        AccountView,
        GiveBackRequest,
        LeaseReply,
        LeaseRequest,
        ReapRequest,
        TopupRequest,
    )
    from contracts.display import timer_at
    from contracts.names import ACCOUNT_WORKFLOW

from workflows._activities import ACCOUNT_REAP
from workflows._job_errors import refusal

__all__ = ["BudgetAccountWorkflow", "account_view"]

MAX_CLOSED = 2000  # job ids remembered after give-back, to ignore a retried give-back or lease
# An update that reaches a run after it decided to continue as new would change a state already
# handed to the next run: its validator refuses it with this text, and callers retry (next run).
CONTINUING = "the account is continuing as new; retry"


def account_view(state: AccountState, now: datetime | None = None) -> AccountView:
    """The state with what is leased and left this period, and when the period ends."""
    leased_tokens = sum(lease.tokens or 0 for lease in state.leases.values())
    leased_usd = sum((lease.usd or Decimal(0) for lease in state.leases.values()), Decimal(0))
    remaining_tokens = (
        None
        if state.tokens is None
        else state.tokens + state.topup_tokens - state.spent_tokens - leased_tokens
    )
    remaining_usd = None if state.usd is None else state.usd + state.topup_usd - state.spent_usd - leased_usd
    next_reset = None
    if state.period is not None and state.anchor is not None:
        next_reset = state.anchor + (state.period_index + 1) * state.period
    return AccountView(
        state=state,
        leased_tokens=leased_tokens,
        leased_usd=leased_usd,
        remaining_tokens=remaining_tokens,
        remaining_usd=remaining_usd,
        next_reset=next_reset,
    )


@workflow.defn(name=ACCOUNT_WORKFLOW)
class BudgetAccountWorkflow:
    """A budget shared by jobs: ``lease`` at a job's start, ``give_back`` at its end, ``topup``."""

    @workflow.init
    def __init__(self, state: AccountState) -> None:
        # Set here, not in run: an update can arrive in the very first activation, before run starts.
        self.state = state
        if self.state.anchor is None:
            self.state.anchor = workflow.now()
        self.updates = 0
        self.closing = False

    @workflow.run
    async def run(self, state: AccountState) -> None:
        """Reset each period on a durable timer; continue as new when the history grows."""
        next_reap: datetime | None = None  # when open leases are next checked against their jobs
        while not self._should_continue_as_new():
            self._roll()
            now = workflow.now()
            if not self.state.leases:
                next_reap = None
            elif next_reap is None:
                next_reap = now + self.state.reap_every
            elif now >= next_reap:
                await self._reap()
                next_reap = None
                continue
            period_end = self._period_end()
            deadlines = [d for d in (period_end, next_reap) if d is not None]
            leased = bool(self.state.leases)
            wake = min(deadlines) if deadlines else None
            what = "period ends" if wake is not None and wake == period_end else "open leases checked"

            def woken(leased: bool = leased) -> bool:
                return self._should_continue_as_new() or bool(self.state.leases) != leased

            # Wakes when a period ends, a check of the leases is due, or leases appear or all go.
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    woken,
                    timeout=wake - now if wake is not None else None,
                    timeout_summary=f"{what} at {timer_at(wake)}" if wake is not None else None,
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
        self.closing = True
        self._roll()
        workflow.continue_as_new(self.state.model_copy(update={"runs": self.state.runs + 1}))

    # ----- handlers ----------------------------------------------------------------------------

    @workflow.update(name="lease")
    def lease(self, request: LeaseRequest) -> LeaseReply:
        """Hold the job's budget, or refuse saying what is left; a repeated lease returns the first."""
        self._roll()
        self.updates += 1
        state = self.state
        if request.job_id in state.leases:
            return LeaseReply(granted=True, reason="already leased", view=self._view())
        if request.job_id in state.closed:
            return LeaseReply(granted=False, reason="this job already gave its lease back", view=self._view())
        view = self._view()
        reasons = []
        if state.tokens is not None:
            if request.tokens is None:
                reasons.append("the account caps tokens: the job must give budget.tokens")
            elif view.remaining_tokens is not None and request.tokens > view.remaining_tokens:
                reasons.append(f"{request.tokens} tokens asked, {max(0, view.remaining_tokens)} left")
        if state.usd is not None:
            if request.usd is None:
                reasons.append("the account caps usd: the job must give budget.usd")
            elif view.remaining_usd is not None and request.usd > view.remaining_usd:
                reasons.append(f"${request.usd} asked, ${max(Decimal(0), view.remaining_usd)} left")
        if reasons:
            when = f" (next period at {view.next_reset:%Y-%m-%d %H:%M:%S} UTC)" if view.next_reset else ""
            return LeaseReply(granted=False, reason="; ".join(reasons) + when, view=view)
        state.leases[request.job_id] = AccountLease(
            job_id=request.job_id,
            tokens=request.tokens,
            usd=request.usd,
            period=state.period_index,
            at=workflow.now(),
        )
        return LeaseReply(granted=True, view=self._view())

    @lease.validator
    @refusal
    def validate_lease(self, request: LeaseRequest) -> None:
        """Refuse a lease without a job id or with negative amounts."""
        self._refuse_while_closing()
        if not request.job_id:
            raise ValueError("a lease needs the job id")
        if (request.tokens or 0) < 0 or (request.usd or Decimal(0)) < 0:
            raise ValueError("amounts must not be negative")

    @workflow.update(name="give_back")
    def give_back(self, request: GiveBackRequest) -> AccountView:
        """Charge what the job spent to this period and free the rest of its lease (once per job)."""
        self._roll()
        self.updates += 1
        state = self.state
        lease = state.leases.pop(request.job_id, None)
        if lease is None:
            return self._view()  # given back already, or never leased: nothing to do
        # Spend of a lease taken in an earlier period belonged to that period, which is over.
        if lease.period == state.period_index:
            state.spent_tokens += request.tokens_spent
            state.spent_usd += request.usd_spent
        state.lifetime_tokens += request.tokens_spent
        state.lifetime_usd += request.usd_spent
        state.closed = [*state.closed, request.job_id][-MAX_CLOSED:]
        return self._view()

    @give_back.validator
    @refusal
    def validate_give_back(self, request: GiveBackRequest) -> None:
        """Refuse negative spend."""
        self._refuse_while_closing()
        if request.tokens_spent < 0 or request.usd_spent < 0:
            raise ValueError("spend must not be negative")

    @workflow.update(name="topup")
    def topup(self, request: TopupRequest) -> AccountView:
        """Raise this period's caps by the amounts given."""
        self._roll()
        self.updates += 1
        self.state.topup_tokens += request.tokens
        self.state.topup_usd += request.usd
        return self._view()

    @topup.validator
    @refusal
    def validate_topup(self, request: TopupRequest) -> None:
        """Refuse negative or empty top-ups, and top-ups of a dimension the account does not cap."""
        self._refuse_while_closing()
        if request.tokens < 0 or request.usd < 0:
            raise ValueError("amounts must not be negative")
        if not request.tokens and not request.usd:
            raise ValueError("give tokens or usd to add")
        if request.tokens and self.state.tokens is None:
            raise ValueError(f"account {self.state.name!r} has no token cap to raise")
        if request.usd and self.state.usd is None:
            raise ValueError(f"account {self.state.name!r} has no dollar cap to raise")

    @workflow.query(name="show")
    def show(self) -> AccountView:
        """Caps, this period's spend, open leases and what is left."""
        return self._view()

    # ----- internals ---------------------------------------------------------------------------

    async def _reap(self) -> None:
        """Charge the whole lease of each job that ended without giving back (spend unknown: never zero)."""
        try:
            reply = await ACCOUNT_REAP.run(
                ReapRequest(job_ids=sorted(self.state.leases)),
                summary=f"check {len(self.state.leases)} leases",
            )
        except ActivityError as error:  # the account must outlive a failed check: try again next time
            workflow.logger.warning("checking the leases failed: %s", error)
            return
        state = self.state
        for job_id in reply.ended:
            lease = state.leases.pop(job_id, None)
            if lease is None:
                continue  # given back while we looked
            tokens, usd = lease.tokens or 0, lease.usd or Decimal(0)
            if lease.period == state.period_index:
                state.spent_tokens += tokens
                state.spent_usd += usd
            state.lifetime_tokens += tokens
            state.lifetime_usd += usd
            state.closed = [*state.closed, job_id][-MAX_CLOSED:]
            state.reaped = [*state.reaped, job_id][-MAX_CLOSED:]

    def _refuse_while_closing(self) -> None:
        if self.closing:
            raise ValueError(CONTINUING)

    def _view(self) -> AccountView:
        return account_view(self.state)

    def _should_continue_as_new(self) -> bool:
        return self.updates >= self.state.updates_per_run or workflow.info().is_continue_as_new_suggested()

    def _period_end(self) -> datetime | None:
        state = self.state
        if state.period is None or state.anchor is None:
            return None
        return state.anchor + (state.period_index + 1) * state.period

    def _roll(self) -> None:
        """Start the current period if the clock has passed the previous one's end."""
        state = self.state
        if state.period is None or state.anchor is None:
            return
        index = (workflow.now() - state.anchor) // state.period
        if index > state.period_index:
            state.period_index = index
            state.spent_tokens, state.spent_usd = 0, Decimal(0)
            state.topup_tokens, state.topup_usd = 0, Decimal(0)
