"""Budget keeping for a job: reserve a call's worst case before it starts, settle it after.

``Job.turn`` calls ``reserve`` before every model call and ``settle`` (or ``fail``) after; the tool
loop calls ``reserve_tool`` before every tool call and ``settle_tool`` after.
The arithmetic is ``policies.ledger.Ledger`` (pure, tested); this module maps a job onto it and
decides what happens when a reservation is refused.

Nodes: ``job`` (the spec's ``budget``: tokens, usd, calls, tool_calls, and an optional per-period
``quota``)
-> ``agent:<name>`` (an agent's own ``budget``, if any) and ``child:<id>`` (budgets carved for
child jobs by the delegation modes, see ``carve_child`` / ``close_child``). Invariant: on every
node, settled + reserved never exceeds a limit; only a call that used more than it reserved (or
usage reported without a reservation) can break it, and the node then says ``overrun``.

A refused reservation:

- by a quota that a later period satisfies: the job waits (status ``waiting``) for that period;
- otherwise ``on_exhausted`` decides: ``stop`` ends the job (``StopJob`` with
  ``budget_exhausted``, naming the node and limit); ``degrade`` grants the call on a cheaper tier or
  with fewer output tokens, if that fits; ``ask`` waits for the ``add_budget`` update up to
  ``ask_timeout``, then takes ``ask_default``.

A refused tool call (its one tool call, or its price in usd) neither waits nor asks: the call is
refused with the reason, and the model hears why. Tool calls are not model calls: they count in
``tool_calls`` (and their price in ``usd``), never in ``calls`` or tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.accounts import AccountCall, GiveBackRequest, LeaseRequest
    from contracts.controls import AddBudgetRequest
    from contracts.display import timer_at
    from contracts.jobs import JobStatus, LedgerTotals, StopReason
    from contracts.models import EstimateReason, ModelCallResult, ModelInfo, Usage
    from contracts.spec import AgentSpec, BudgetLimits, BudgetSpec, JobSpec
    from contracts.state import BudgetState
    from contracts.tools import ToolDef
    from policies.ledger import Ledger, Limits, Quota, Refusal

from workflows._activities import BUDGET_ACCOUNT
from workflows._job_errors import StopJob
from workflows._port import Job

JOB = "job"
MIN_OUTPUT_TOKENS = 64  # below this a reply is rarely worth having: degrading stops here


def agent_node(name: str) -> str:
    """The ledger node of an agent."""
    return f"agent:{name}"


def child_node(child_id: str) -> str:
    """The ledger node of a child job's carved budget."""
    return f"child:{child_id}"


def _limits(budget: BudgetLimits) -> Limits:
    return Limits(tokens=budget.tokens, usd=budget.usd, calls=budget.calls, tool_calls=budget.tool_calls)


@dataclass
class Grant:
    """What a reservation allows: the model and output cap the call must use."""

    model: ModelInfo
    max_output_tokens: int


@dataclass
class _Pending:
    """An open reservation, kept to charge a failed call its worst case in ``totals`` too."""

    agent: str
    usage: Usage
    usd: Decimal


class BudgetKeeper:
    """The job's ledger, its exhaustion policy, and the ``LedgerTotals`` view of both."""

    def __init__(self, job: Job, spec: JobSpec, state: BudgetState | None = None) -> None:
        """Keep ``state`` (a run after continue-as-new), or set up the spec's limits and quota."""
        self.job = job
        self.spec = spec
        self._pending: dict[str, _Pending] = {}
        if state is None:
            state = BudgetState(ledger=Ledger(), totals=LedgerTotals())
            budget = spec.budget
            quota = None
            if budget is not None and budget.quota is not None:
                q = budget.quota
                quota = Quota(
                    tokens=q.tokens, usd=q.usd, calls=q.calls, tool_calls=q.tool_calls, period=q.period
                )
            state.ledger.add_node(
                JOB,
                None,
                _limits(budget) if budget else None,
                quota=quota,
                period_anchor=workflow.info().start_time if quota is not None else None,
            )
        self.state = state  # part of the job's state: continue-as-new carries spend, limits, lease
        for agent in spec.agents:
            self._agent(agent.name)
        self._refresh()

    @property
    def ledger(self) -> Ledger:
        """The job's ledger: limits, spend and reservations per node."""
        return self.state.ledger

    @property
    def totals(self) -> LedgerTotals:
        """The ledger as queries and results show it, per agent with the input/output split."""
        return self.state.totals

    # ----- the hooks turn() calls --------------------------------------------------------------

    async def reserve(
        self, call_id: str, agent: AgentSpec, model: ModelInfo, input_estimate: int, max_output_tokens: int
    ) -> Grant:
        """Reserve the worst case, waiting or degrading as the policy says; ``StopJob`` if it cannot."""
        if self.spec.account is not None and self.state.lease == "none":
            await self.lease_from_account()
        grant = Grant(model=model, max_output_tokens=max_output_tokens)
        node = self._agent(agent.name)
        budget = self.spec.budget or BudgetSpec()
        asked = False
        while True:
            refusal = self._try(call_id, agent.name, node, grant, input_estimate)
            if refusal is None:
                return grant
            if refusal.kind == "quota" and refusal.retry_after is not None:
                await self._wait_for_quota(refusal)
                continue
            policy = budget.on_exhausted
            if policy == "ask" and not asked and refusal.kind == "limit":
                asked = True
                if await self._ask(agent.name, node, grant, input_estimate, refusal, budget.ask_timeout):
                    continue
                policy = budget.ask_default
            elif policy == "ask":
                policy = budget.ask_default
            if policy == "degrade":
                degraded = self._degrade(call_id, agent.name, node, grant, input_estimate, refusal)
                if degraded is not None:
                    return degraded
            raise StopJob(StopReason.budget_exhausted, f"the next call of {agent.name}: {refusal.message()}")

    def settle(
        self, call_id: str, agent: str, model: ModelInfo, result: ModelCallResult, node: str | None = None
    ) -> None:
        """Charge the call's real usage, and the estimated usage of attempts that died mid-call.

        A ``call_id`` that was never reserved (spend a child reports, say) is charged as it is, on
        ``node`` (default the agent's); if it does not fit, the node is flagged ``overrun``.
        """
        target = node or self._agent(agent)
        usd = result.cost_usd if result.cost_usd is not None else model.price.cost(result.usage)
        if call_id in self.ledger.open_calls:
            self.ledger.settle(
                call_id,
                result.usage.total_tokens,
                usd,
                estimated=result.usage.estimated or result.cost_usd is None,
            )
        else:
            self._charge_unreserved(target, result.usage.total_tokens, usd, estimated=result.usage.estimated)
        self._pending.pop(call_id, None)
        self._add_to_totals(agent, result.usage, result.cost_usd)
        if result.lost_usage is not None:
            # Dead attempts of this call have no reservation of their own: charged on top, estimated.
            lost_usd = model.price.cost(result.lost_usage)
            self._charge_unreserved(target, result.lost_usage.total_tokens, lost_usd, estimated=True)
            self._add_to_totals(agent, result.lost_usage, lost_usd)
        self._refresh()

    def fail(self, call_id: str, reason: EstimateReason = "failed mid-reply") -> None:
        """The call ended without a result: charge its reservation, marked estimated (never zero)."""
        if call_id not in self.ledger.open_calls:
            return
        self.ledger.fail(call_id)
        pending = self._pending.pop(call_id, None)
        if pending is not None:
            self._add_to_totals(pending.agent, pending.usage.because(reason), pending.usd)
        self._refresh()

    def release(self, call_id: str) -> None:
        """The call was never sent: drop its reservation, charge nothing."""
        if call_id not in self.ledger.open_calls:
            return
        self.ledger.release(call_id)
        self._pending.pop(call_id, None)
        self._refresh()

    async def reserve_tool(self, call_id: str, agent: AgentSpec, tool: ToolDef) -> str | None:
        """Reserve one tool call and its price on the agent's node and every ancestor (quotas too)
        before the call runs: None when reserved, else why not (nothing is reserved).

        It never waits for a quota period nor asks for budget: a refused tool call is refused. Like
        a model call, the job's first use of the budget leases it from the spec's account (and
        ``StopJob`` if the account refuses the lease).
        """
        if self.spec.account is not None and self.state.lease == "none":
            await self.lease_from_account()
        node = self._agent(agent.name)
        refusal = self.ledger.reserve_tool(call_id, node, usd=tool.price_usd, now=workflow.now())
        if refusal is not None:
            return f"tool {tool.name!r} of {agent.name}: {refusal.message()}"
        self._refresh()
        return None

    def settle_tool(self, call_id: str, agent: str, tool: ToolDef, ran: bool) -> None:
        """Charge a reserved tool call (``ran``: one tool call and its price) or release it (it never
        started). A call id that is not reserved (settled already) changes nothing."""
        if call_id not in self.ledger.open_calls:
            return
        if not ran:
            self.ledger.release(call_id)
        else:
            self.ledger.settle(call_id, tokens=0, usd=tool.price_usd)
            totals = self.totals
            totals.tool_calls += 1
            totals.per_agent_tool_calls[agent] = totals.per_agent_tool_calls.get(agent, 0) + 1
            if tool.price_usd:
                totals.tool_cost_usd += tool.price_usd
                totals.cost_usd += tool.price_usd
                cost = totals.per_agent_cost_usd.get(agent, Decimal(0))
                totals.per_agent_cost_usd[agent] = cost + tool.price_usd
        self._refresh()

    def count_child_tools(self, ledger: LedgerTotals, node: str | None = None) -> None:
        """Count the tool calls a child job ran, per agent (on ``node`` if given, else each agent's).
        Their price is in the usd the child reported for its agents: counted here, not charged again."""
        for agent, count in ledger.per_agent_tool_calls.items():
            if count <= 0:
                continue
            target = node or self._agent(agent)
            self.state.extra_seq += 1
            charge_id = f"{target}#extra-{self.state.extra_seq}"
            self.ledger.charge_tool_calls(charge_id, target, count, now=workflow.now())
            self.totals.tool_calls += count
            self.totals.per_agent_tool_calls[agent] = self.totals.per_agent_tool_calls.get(agent, 0) + count
        self.totals.tool_cost_usd += ledger.tool_cost_usd
        self._refresh()

    # ----- add_budget --------------------------------------------------------------------------

    def add(self, request: AddBudgetRequest) -> LedgerTotals:
        """Raise a node's limits (the ``add_budget`` update); a waiting ``ask`` then resumes."""
        refusal = self.ledger.add_budget(
            self._node_of(request.node), tokens=request.tokens, usd=request.usd, tool_calls=request.tool_calls
        )
        if refusal is not None:  # only carved children can refuse; validate_add keeps them out
            raise ValueError(refusal.message())
        self._refresh()
        return self.totals

    def validate_add(self, request: AddBudgetRequest) -> None:
        """Refuse a bad ``add_budget`` before it is written to history."""
        if request.tokens < 0 or request.usd < 0 or request.tool_calls < 0:
            raise ValueError("amounts must not be negative")
        if not request.tokens and not request.usd and not request.tool_calls:
            raise ValueError("give tokens or usd (or tool_calls) to add")
        node = self._node_of(request.node)
        known = [JOB] + [agent_node(a.name) for a in self.spec.agents]
        if node not in known:
            names = ", ".join(repr(n) for n in [JOB] + [a.name for a in self.spec.agents])
            raise ValueError(f"unknown budget node {request.node!r}; this job has {names}")
        # Uncapped stays uncapped (there is nothing to raise); refuse only an update that changes nothing.
        limits = self.ledger.nodes[node].limits
        if (
            not (request.tokens and limits.tokens is not None)
            and not (request.usd and limits.usd is not None)
            and not (request.tool_calls and limits.tool_calls is not None)
        ):
            raise ValueError(f"node {node!r} has no limit on what you add: it is not capped there")

    # ----- child budgets (delegation modes) ----------------------------------------------------

    def carve_child(self, child_id: str, tokens: int | None, usd: Decimal | None) -> str | None:
        """Set aside a child job's budget out of what the job has left: None if carved, else why not.

        The carved amount counts as used on the job until ``close_child``. Charge the child's spend
        with ``settle(..., node=child_node(child_id))`` as it reports, or all at once in
        ``close_child``; either way it is charged once.
        """
        refusal = self.ledger.carve(child_node(child_id), JOB, Limits(tokens=tokens, usd=usd))
        self._refresh()
        return None if refusal is None else refusal.message()

    def close_child(self, child_id: str, tokens_spent: int, usd_spent: Decimal) -> None:
        """The child ended (completed, failed or cancelled): charge what it spent beyond what was
        already settled on its node, and return the rest of its budget to the job."""
        node = child_node(child_id)
        if node not in self.ledger.nodes or self.ledger.nodes[node].closed:
            return
        spent = self.ledger.view().node(node).spent
        tokens, usd = max(0, tokens_spent - spent.tokens), max(Decimal(0), usd_spent - spent.usd)
        if tokens or usd:
            self._charge_unreserved(node, tokens, usd, estimated=False)
        self.ledger.close_child(node)
        self._refresh()

    # ----- budget account ----------------------------------------------------------------------

    async def lease_from_account(self) -> None:
        """Lease the job's budget from the spec's ``account`` (once): ``StopJob`` if refused.

        Runs before the job's first call; the job's own limits stay as its spec says, the account
        only holds them. ``give_back`` returns what is left when the job ends.
        """
        account = self.spec.account
        budget = self.spec.budget
        if account is None or budget is None or self.state.lease != "none":
            return
        request = LeaseRequest(job_id=self.job.job_id, tokens=budget.tokens, usd=budget.usd)
        self.job.state.detail = f"leasing from account {account!r}"
        try:
            reply = await BUDGET_ACCOUNT.run(
                AccountCall(account=account, lease=request), summary=f"lease from account {account}"
            )
        except ActivityError as error:
            cause = error.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause)
            raise StopJob(StopReason.failed, f"account {account!r}: {message}") from None
        self.job.state.detail = ""
        if not reply.granted:
            self.state.lease = "returned"  # nothing is held: nothing to give back
            raise StopJob(
                StopReason.budget_exhausted, f"account {account!r} refused the lease: {reply.reason}"
            )
        self.state.lease = "held"

    async def give_back(self) -> None:
        """Return the unused part of the account lease, charging what the job spent (once).

        Called when the job ends, whatever the reason; a failure to reach the account is recorded
        in ``detail`` and does not fail the job (the lease stays visible in ``harness budget show``).
        """
        account = self.spec.account
        if account is None or self.state.lease != "held":
            return
        self.state.lease = "returned"
        job = self.ledger.view().node(JOB)
        used_tokens = job.spent.tokens + job.reserved.tokens
        used_usd = job.spent.usd + job.reserved.usd
        request = GiveBackRequest(job_id=self.job.job_id, tokens_spent=used_tokens, usd_spent=used_usd)
        try:
            await BUDGET_ACCOUNT.run(
                AccountCall(account=account, give_back=request), summary=f"give back to account {account}"
            )
        except ActivityError as error:
            workflow.logger.warning("could not give back to account %s: %s", account, error)

    def check_settled(self) -> None:
        """Refuse (``RuntimeError``) to hand the state on with a model or tool call still reserved."""
        tools = [c for c, call in self.ledger.open_calls.items() if call.amount.tool_calls]
        if self._pending or tools:
            in_flight = sorted([*self._pending, *tools])
            raise RuntimeError(f"budget state handed on with calls in flight: {in_flight}")

    # ----- internals ---------------------------------------------------------------------------

    def _agent(self, name: str) -> str:
        node = agent_node(name)
        if node not in self.ledger.nodes:
            spec = next((a for a in self.spec.agents if a.name == name), None)
            own = spec.budget if spec is not None else None
            limits = _limits(own) if own else None
            self.ledger.add_node(node, JOB, limits)
        return node

    def _node_of(self, name: str) -> str:
        if name in (JOB, self.job.job_id):
            return JOB
        if name.startswith("agent:"):
            return name
        return agent_node(name)

    def _try(self, call_id: str, agent: str, node: str, grant: Grant, input_estimate: int) -> Refusal | None:
        worst = Usage(
            input_tokens=input_estimate, output_tokens=grant.max_output_tokens, requests=1, estimated=True
        )
        usd = grant.model.price.cost(worst)
        refusal = self.ledger.reserve(call_id, node, tokens=worst.total_tokens, usd=usd, now=workflow.now())
        if refusal is None:
            self._pending[call_id] = _Pending(agent=agent, usage=worst, usd=usd)
            self._refresh()
        return refusal

    def _fits(self, node: str, grant: Grant, input_estimate: int) -> bool:
        """Whether the call's worst case fits the limits now (quotas are waited for separately)."""
        left = self.ledger.remaining(node)
        tokens = input_estimate + grant.max_output_tokens
        usd = grant.model.price.cost(
            Usage(input_tokens=input_estimate, output_tokens=grant.max_output_tokens)
        )
        return (
            (left.tokens is None or tokens <= left.tokens)
            and (left.usd is None or usd <= left.usd)
            and (left.calls is None or left.calls >= 1)
        )

    async def _wait_for_quota(self, refusal: Refusal) -> None:
        assert refusal.retry_after is not None
        self.job.state.detail = f"quota used up; next period in {refusal.retry_after} ({refusal.message()})"
        self.job.set_status(JobStatus.waiting)
        # A durable timer: a worker restart while waiting resumes the same wait.
        await self.job.wait_for(
            lambda: False,
            within=refusal.retry_after,
            where="waiting for the next quota period",
            summary=f"quota: next period at {timer_at(workflow.now() + refusal.retry_after)}",
        )
        self.job.state.detail = ""
        self.job.set_status(JobStatus.running)

    async def _ask(
        self, agent: str, node: str, grant: Grant, input_estimate: int, refusal: Refusal, within: timedelta
    ) -> bool:
        self.job.state.detail = (
            f"waiting for add_budget (up to {within}): the next call of {agent}: {refusal.message()}"
        )
        self.job.set_status(JobStatus.waiting)
        raised = await self.job.wait_for(
            lambda: self._fits(node, grant, input_estimate),
            within=within,
            where="waiting for add_budget",
            summary=f"budget ask: waits for add_budget until {timer_at(workflow.now() + within)}",
        )
        self.job.state.detail = "" if raised else f"nobody raised the budget within {within}"
        self.job.set_status(JobStatus.running)
        return raised

    def _degrade(
        self, call_id: str, agent: str, node: str, grant: Grant, input_estimate: int, refusal: Refusal
    ) -> Grant | None:
        """A cheaper tier at full output, else fewer output tokens (halved to a floor); None: no fit."""
        current = grant.model

        def worst(model: ModelInfo, out: int) -> Decimal:
            return model.price.cost(Usage(input_tokens=input_estimate, output_tokens=out))

        cheaper = sorted(
            (m for m in self.job.state.models.values() if m.tier < current.tier),
            key=lambda m: (worst(m, grant.max_output_tokens), m.ref),
        )
        options = [Grant(m, min(grant.max_output_tokens, m.max_output_tokens)) for m in cheaper]
        out = grant.max_output_tokens // 2
        while out >= MIN_OUTPUT_TOKENS:
            options += [Grant(m, min(out, m.max_output_tokens)) for m in [current, *cheaper]]
            out //= 2
        for option in options:
            if self._try(call_id, agent, node, option, input_estimate) is None:
                model = (
                    f"{current.ref} -> {option.model.ref}, "
                    if option.model.ref != current.ref
                    else f"on {current.ref}, "
                )
                note = (
                    f"degraded {agent}: {model}{grant.max_output_tokens} -> {option.max_output_tokens} "
                    f"output tokens ({refusal.message()})"
                )
                self.job.state.detail = note
                self.totals.degraded.append(note)
                return option
        return None

    def _charge_unreserved(self, node: str, tokens: int, usd: Decimal, estimated: bool) -> None:
        self.state.extra_seq += 1
        self.ledger.charge(
            f"{node}#extra-{self.state.extra_seq}", node, tokens, usd, now=workflow.now(), estimated=estimated
        )

    def _add_to_totals(self, agent: str, usage: Usage, cost: Decimal | None) -> None:
        totals = self.totals
        totals.usage = totals.usage + usage
        totals.calls += usage.requests
        totals.per_agent[agent] = totals.per_agent.get(agent, Usage()) + usage
        if cost is None:
            totals.cost_known = False
        else:
            totals.cost_usd += cost
            totals.per_agent_cost_usd[agent] = totals.per_agent_cost_usd.get(agent, Decimal(0)) + cost

    def _refresh(self) -> None:
        limits = self.ledger.nodes[JOB].limits
        self.totals.limit_tokens = limits.tokens
        self.totals.limit_usd = limits.usd
        self.totals.limit_calls = limits.calls
        self.totals.limit_tool_calls = limits.tool_calls
        self.totals.nodes = self.ledger.view().nodes
