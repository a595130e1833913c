"""Routed steps: the cheapest model that meets the step's precision need, or a cascade of them.

A step with ``route`` or ``cascade`` goes through ``StepRouter.turn`` instead of ``Job.turn``;
every other step is untouched (same commands, so old histories replay). The decisions are
``policies.routing``'s (pure); this module feeds it the resolved models, the remaining budget and
the learned stats, carries its choices out as ordinary charged turns, and records everything:

- ``route``: one call on the model with the lowest expected cost that meets the need and whose
  worst case fits the remaining budget. Checks, if any, only teach the router.
- ``cascade``: call the cheapest rung of the planned ladder, check its output (deterministic checks
  here, judges as charged turns, registered functions as an activity), and escalate one rung only
  when a check fails. It stops at a passing output, at the top of the ladder, or when what is left
  of the budget (dollars or tokens) cannot pay the next rung's worst case and its check.

Learning: before its first routed step a job reads the shared pass-rate stats (the ``RoutingStats``
workflow, through the ``harness.routing_stats`` activity) and after each routed step it records the
step's check outcomes there, keyed so a retry never counts twice. If the stats cannot be reached the
job goes on with what it has, and says so in the log.

Recorded: each routed call's and check's ``TurnRecord.routing``; one ``RoutingRecord`` per step in
``JobResult.routing``; the current decision's summary in ``status`` (``detail``) and in the
workflow's current details in the Temporal UI.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.jobs import JobResult, StopReason
    from contracts.models import Message, ModelCallResult, ModelInfo, Usage
    from contracts.outputs import estimate_request_tokens
    from contracts.routing import RoutingAttempt, RoutingOutcome, RoutingOutcomes, RoutingRecord
    from contracts.spec import AgentSpec, CascadeSpec, GoalCheck, JobSpec, RouteSpec, StepSpec
    from policies.goals import DETERMINISTIC, CheckOutcome, GoalVerdict, combine
    from policies.routing import (
        TIER_PRIOR,
        TOP_PRIOR,
        CallEstimate,
        Candidate,
        Escalation,
        Precision,
        RoutingDecision,
        RoutingStats,
        cascade,
        escalate,
        route,
    )

from workflows._activities import ROUTING_STATS
from workflows._checks import JUDGE_INSTRUCTIONS, JUDGE_MAX_OUTPUT, judge_prompt, run_check
from workflows._job_errors import StopJob
from workflows._port import Job

__all__ = ["StepRouter"]

# The router weighs expected cost at this share of the output cap; the budget check uses the cap.
EXPECTED_OUTPUT_SHARE = 2
# A routed output is judged on a text of up to its cap; planning prices that text at this many
# characters per token (the reservation, made on the real text, is what actually binds).
CHARS_PER_TOKEN = 4
FLOOR = 0.05  # as policies.routing.cascade's default: models below it are not worth a call

Outcome = Literal["passed", "failed", "unchecked", "refused"]


def need_of(value: str | float) -> Precision | float:
    """A spec's precision need as the router takes it."""
    return Precision(value) if isinstance(value, str) else float(value)


class StepRouter:
    """Routes the steps of one job that ask for it; holds the job's view of the learned stats."""

    def __init__(self, job: Job, spec: JobSpec) -> None:
        self.job = job
        self.spec = spec
        self.stats: RoutingStats | None = None
        self.records: list[RoutingRecord] = []

    def handles(self, step: StepSpec) -> bool:
        """Whether ``step`` has routing settings (otherwise the plain turn runs it)."""
        return step.route is not None or step.cascade is not None

    async def step_turn(self, step: StepSpec, messages: list[Message]) -> ModelCallResult:
        """Run ``step``: on the model(s) its routing settings choose, else as a plain turn of its agent."""
        if self.handles(step):
            return await self.turn(step, messages)
        agent = self.spec.agent(step.agent)
        return await self.job.turn(agent, messages, step=step.id, max_output_tokens=step.max_output_tokens)

    def annotate(self, result: JobResult) -> JobResult:
        """``result`` with the routing records of the job's routed steps."""
        if not self.records:
            return result
        return result.model_copy(update={"routing": list(self.records)})

    # ----- one routed step ---------------------------------------------------------------------

    async def turn(self, step: StepSpec, messages: list[Message]) -> ModelCallResult:
        """Run ``step`` on the model(s) its routing settings choose; return the output to keep."""
        options = step.route or step.cascade
        assert options is not None, "handles(step) must hold"
        agent = self.spec.agent(step.agent)
        kind = step.task_kind or agent.task_kind or "general"
        need = need_of(step.precision if step.precision is not None else agent.precision or "standard")
        refs = options_models(options)
        max_out = step.max_output_tokens or agent.max_output_tokens
        call = CallEstimate(
            kind=kind,
            input_tokens=estimate_request_tokens(agent.instructions, [m.content for m in messages], None),
            output_tokens=max(1, max_out // EXPECTED_OUTPUT_SHARE),
            max_output_tokens=max_out,
        )
        candidates = [self._candidate(ref, options.priors) for ref in dict.fromkeys(refs)]
        stats = await self._stats() if options.learn else RoutingStats()
        checks = options.checks or (self.spec.goal.checks if self.spec.goal else [])
        if isinstance(options, RouteSpec):
            decision = route(
                candidates,
                call,
                need,
                self._usd_left(),
                stats=stats,
                on_shortfall=options.on_shortfall,
                quantile=options.quantile,
            )
        else:
            decision = cascade(
                candidates,
                call,
                need,
                self._usd_left(),
                check_cost=self._check_cost(checks, max_out),
                stats=stats,
                check_final=options.check_final,
                until=options.until,
                on_shortfall=options.on_shortfall,
                quantile=options.quantile,
            )
        self._show(step, decision)
        if decision.choice is None:
            self._record(step, decision, [], "refused")
            nothing_fits = not any(c.affordable for c in decision.candidates)
            reason = StopReason.budget_exhausted if nothing_fits else StopReason.failed
            raise StopJob(reason, f"step {step.id}: routing refused: {decision.reason}")

        attempts: list[RoutingAttempt] = []
        outcomes: list[RoutingOutcome] = []
        while True:
            model = decision.choice
            assert model is not None
            result = await self._call(agent, model, step, messages, decision)
            attempt = RoutingAttempt(model=model, call_id=result.call_id, cost_usd=result.cost_usd)
            last = decision.plan.index(model) == len(decision.plan) - 1
            free = all(check.kind in DETERMINISTIC for check in checks)
            checked = bool(checks)
            if isinstance(options, CascadeSpec):
                checked = checked and (not last or options.check_final or free)
            if checked:
                verdict, check_cost = await self._check(checks, options.threshold, result, step, model)
                attempt.passed, attempt.check = verdict.met, verdict.summary()
                attempt.check_cost_usd = check_cost
                outcomes.append(RoutingOutcome(kind=kind, model=model, passed=verdict.met))
                stats.record(kind, model, verdict.met)
            attempts.append(attempt)
            if isinstance(options, RouteSpec) or not checked or attempt.passed:
                break
            decision = self._escalate(decision, options, call, checks, max_out)
            self._show(step, decision)
            if decision.choice is None:
                break
        passed = attempts[-1].passed
        outcome: Outcome = "unchecked" if passed is None else "passed" if passed else "failed"
        self._record(step, decision, attempts, outcome)
        if options.learn and outcomes:
            await self._learn(f"{self.job.job_id}/{step.id}/{result.call_id}", outcomes)
        return result

    # ----- the pieces --------------------------------------------------------------------------

    def _candidate(self, ref: str, priors: dict[str, float]) -> Candidate:
        model: ModelInfo = self.job.state.models[ref]
        prior = priors.get(ref, TIER_PRIOR.get(model.tier, TOP_PRIOR))
        return Candidate(
            name=ref,
            tier=model.tier,
            input_per_mtok=model.price.input_per_mtok,
            output_per_mtok=model.price.output_per_mtok,
            max_output_tokens=model.max_output_tokens,
            default_quality=prior,
        )

    def _usd_left(self) -> Decimal | None:
        totals = self.job.totals
        if totals.limit_usd is None:
            return None
        return max(Decimal(0), totals.limit_usd - totals.cost_usd)

    def _tokens_left(self) -> int | None:
        totals = self.job.totals
        if totals.limit_tokens is None:
            return None
        return max(0, totals.limit_tokens - totals.usage.total_tokens)

    def _judge_worst(self, check: GoalCheck, max_out: int) -> Usage:
        text = "x" * (max_out * CHARS_PER_TOKEN)
        prompt = judge_prompt(check.rubric or "", text)
        tokens = estimate_request_tokens(JUDGE_INSTRUCTIONS, [prompt], "judge_score")
        return Usage(input_tokens=tokens, output_tokens=JUDGE_MAX_OUTPUT, requests=1)

    def _check_cost(self, checks: list[GoalCheck], max_out: int) -> Decimal:
        """Worst case of one round of checks: judges are model calls; the rest are free."""
        cost = Decimal(0)
        for check in checks:
            if check.kind == "judge" and check.model:
                cost += self.job.state.models[check.model].price.cost(self._judge_worst(check, max_out))
        return cost

    def _check_tokens(self, checks: list[GoalCheck], max_out: int) -> int:
        return sum(
            self._judge_worst(check, max_out).total_tokens for check in checks if check.kind == "judge"
        )

    def _escalate(
        self,
        decision: RoutingDecision,
        options: CascadeSpec,
        call: CallEstimate,
        checks: list[GoalCheck],
        max_out: int,
    ) -> RoutingDecision:
        """One rung up after a failed check, or a stop that says why.

        The plan was cut to what the budget's worst case allowed at the start; real calls usually
        cost less, so at the top of the plan the next rung of the ladder is added when it fits now.
        """
        current = decision.choice
        assert current is not None
        usd_left = self._usd_left()
        if decision.plan[-1] == current and options.until == "top":
            nxt = _next_rung(decision, current)
            if nxt is not None:
                worst = next(c for c in decision.candidates if c.name == nxt).worst_case_cost
                worst += decision.check_cost if decision.check_final else Decimal(0)
                if usd_left is None or worst <= usd_left:
                    decision = decision.model_copy(update={"plan": [*decision.plan, nxt]})
                else:
                    reason = (
                        f"check failed at {current}; ${usd_left:.6f} left cannot pay {nxt} "
                        f"(worst case ${worst:.6f})"
                    )
                    return _stopped(decision, current, reason)
        moved = escalate(decision, usd_left)
        nxt = moved.choice
        tokens_left = self._tokens_left()
        if nxt is not None and tokens_left is not None:
            model = self.job.state.models[nxt]
            at = moved.plan.index(nxt)
            checked = at + 1 < len(moved.plan) or moved.check_final
            tokens = call.input_tokens + min(call.max_output_tokens, model.max_output_tokens)
            tokens += self._check_tokens(checks, max_out) if checked else 0
            if tokens > tokens_left:
                reason = f"check failed at {current}; {tokens_left} tokens left cannot pay {nxt} ({tokens})"
                return _stopped(decision, current, reason)
        return moved

    async def _call(
        self,
        agent: AgentSpec,
        ref: str,
        step: StepSpec,
        messages: list[Message],
        decision: RoutingDecision,
    ) -> ModelCallResult:
        """One rung's call, a turn like any other (preempted, it goes on on the same model)."""
        note = {
            "role": "call",
            "step": step.id,
            "rung": decision.plan.index(ref) if ref in decision.plan else 0,
            "summary": decision.summary(),
            "decision": decision.model_dump(mode="json"),
        }
        routed = agent.model_copy(update={"model": ref})
        return await self.job.turn(
            routed, list(messages), step=step.id, max_output_tokens=step.max_output_tokens, note=note
        )

    async def _check(
        self, checks: list[GoalCheck], threshold: float, result: ModelCallResult, step: StepSpec, model: str
    ) -> tuple[GoalVerdict, Decimal]:
        """Every check of ``result``'s text (rule 'all'), and what the judges cost."""
        outcomes: list[CheckOutcome] = []
        cost = Decimal(0)
        goal = self.spec.goal
        for check in checks:
            outcome, spent = await run_check(
                self.job,
                check,
                result.text,
                threshold=threshold,
                rubric=check.rubric or (goal.description if goal else "") or self.spec.task,
                step=step.id,
                summary=f"check {check.value} of step {step.id} on {model}",
                note={"role": "check", "step": step.id, "for_call": result.call_id, "model": model},
            )
            outcomes.append(outcome)
            cost += spent
        return combine(outcomes, "all", threshold), cost

    async def _stats(self) -> RoutingStats:
        """The learned stats, read once per job (before its first routed step)."""
        if self.stats is None:
            self.stats = await self._exchange(RoutingOutcomes()) or RoutingStats()
        return self.stats

    async def _learn(self, key: str, outcomes: list[RoutingOutcome]) -> None:
        await self._exchange(RoutingOutcomes(key=key, outcomes=outcomes))

    async def _exchange(self, batch: RoutingOutcomes) -> RoutingStats | None:
        what = f"record {len(batch.outcomes)} routing outcome(s)" if batch.outcomes else "read routing stats"
        try:
            stats = await ROUTING_STATS.run(batch, summary=what)
        except ActivityError as error:
            # Learning is an optimisation: a job routes on priors rather than fail for want of it.
            workflow.logger.warning("could not %s: %s; going on without", what, error.cause or error)
            return None
        return stats

    def _show(self, step: StepSpec, decision: RoutingDecision) -> None:
        line = f"step {step.id}: {decision.summary()}"
        self.job.state.detail = line
        workflow.set_current_details(line)

    def _record(
        self, step: StepSpec, decision: RoutingDecision, attempts: list[RoutingAttempt], outcome: Outcome
    ) -> None:
        self.records.append(
            RoutingRecord(
                step=step.id,
                kind=decision.kind,
                summary=decision.summary(),
                decision=decision.model_dump(mode="json"),
                attempts=attempts,
                outcome=outcome,
            )
        )
        workflow.set_current_details(
            "\n".join(f"step {r.step} ({r.outcome}): {r.summary}" for r in self.records)
        )


def options_models(options: RouteSpec | CascadeSpec) -> list[str]:
    """The model references a routing setting chooses among."""
    return options.candidates if isinstance(options, RouteSpec) else options.models


def _next_rung(decision: RoutingDecision, current: str) -> str | None:
    """The ladder rung after ``current`` (candidates cheapest first, up to the best one)."""
    ladder = [c for c in decision.candidates if c.quality >= FLOOR and c.quality > 0]
    if not ladder:
        return None
    best = max(c.quality for c in ladder)
    top = next(i for i, c in enumerate(ladder) if c.quality == best)
    names = [c.name for c in ladder[: top + 1]]
    if current not in names:
        return None
    at = names.index(current)
    return names[at + 1] if at + 1 < len(names) else None


def _stopped(decision: RoutingDecision, current: str, reason: str) -> RoutingDecision:
    step = Escalation(from_model=current, to_model=None, reason=reason)
    return decision.model_copy(update={"choice": None, "escalations": [*decision.escalations, step]})
