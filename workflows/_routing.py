"""Routed turns: the cheapest model that meets the turn's precision need, or a cascade of them.

A turn is routed when its step or its agent has ``route`` or ``cascade`` (the step's own setting
wins over its agent's). Modes send their turns through ``TurnRouter``: ``step_turn`` for a step of a
sequential chain or DAG, ``agent_turn`` for any other turn (a group chat's turns, a delegation's
primary and its subtasks). A turn without settings goes straight to ``Job.turn`` with the same
arguments (same commands, so old histories replay). The decisions are ``policies.routing``'s (pure);
this module feeds it the resolved models, the remaining budget and the learned stats, carries its
choices out as ordinary turns, and records everything:

- ``route``: one call on the model with the lowest expected cost that meets the need and whose
  worst case fits the remaining budget. Checks, if any, only teach the router.
- ``cascade``: call the cheapest rung of the planned ladder, check its output (deterministic checks
  here, judges as charged turns, registered functions as an activity), and escalate one rung only
  when a check fails. It stops at a passing output, at the top of the ladder, or when what is left
  of the budget (dollars or tokens) cannot pay the next rung's worst case and its check.

Every rung's call is a ``Job.turn`` with the caller's ``deliver``/``resume`` flags and output type,
so delivery, reservation, preemption, charge and record are the kernel's. A structured-output turn
(a delegation primary's ``plan``) is routed like any other: its checks judge the reply's JSON text.
A rung cut by an interrupt under ``resume=False`` (group chat keeps a cut turn as it is) ends the
cascade unchecked: a partial reply says nothing about the model. Each rung starts from the caller's
messages; the caller's list then grows with what the kept rung's turn added, as with a plain turn.

Learning: before its first routed turn a job reads the shared pass-rate stats (the ``RoutingStats``
workflow, through the ``harness.routing_stats`` activity) and after each routed turn it records the
turn's check outcomes there, keyed so a retry never counts twice. If the stats cannot be reached the
job goes on with what it has, and says so in the log.

Recorded: each routed call's and check's ``TurnRecord.routing``; one ``RoutingRecord`` per routed
turn in ``JobResult.routing`` (named by its step, else ``round N: <agent>``); the current decision's
summary in ``status`` (``detail``) and in the workflow's current details in the Temporal UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from contracts.jobs import JobResult, StopReason
    from contracts.models import Message, ModelCallResult, ModelInfo, Usage
    from contracts.outputs import estimate_request_tokens
    from contracts.routing import RoutingAttempt, RoutingOutcome, RoutingOutcomes, RoutingRecord
    from contracts.spec import (
        AgentSpec,
        CascadeSpec,
        GoalCheck,
        JobSpec,
        RouteSpec,
        StepSpec,
        options_models,
    )
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

__all__ = ["TurnRouter"]

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


@dataclass(frozen=True)
class RoutedTurn:
    """One routed turn: whose it is, the settings it follows, and how its calls run."""

    agent: AgentSpec
    options: RouteSpec | CascadeSpec
    step: str | None  # as ``Job.turn`` records it
    name: str  # what its routing record, status line and learning key call it
    kind: str
    need: Precision | float
    max_output_tokens: int | None
    output_type: str | None
    deliver: bool
    resume: bool


class TurnRouter:
    """Routes the turns of one job that ask for it; holds the job's view of the learned stats."""

    def __init__(self, job: Job, spec: JobSpec) -> None:
        self.job = job
        self.spec = spec
        self.stats: RoutingStats | None = None
        self.records: list[RoutingRecord] = job.state.routing  # in the state: continue-as-new keeps them
        self._lines: list[str] = []  # per record, its line in the workflow's current details

    async def step_turn(self, step: StepSpec, messages: list[Message]) -> ModelCallResult:
        """Run ``step``: routed by its own settings, else its agent's, else a plain turn of its agent."""
        agent = self.spec.agent(step.agent)
        return await self.agent_turn(agent, messages, step=step, max_output_tokens=step.max_output_tokens)

    async def agent_turn(
        self,
        agent: AgentSpec,
        messages: list[Message],
        *,
        step: StepSpec | str | None = None,
        max_output_tokens: int | None = None,
        output_type: str | None = None,
        deliver: bool = True,
        resume: bool = True,
    ) -> ModelCallResult:
        """One turn of ``agent``, routed when it (or ``step``) has routing settings.

        ``step`` is a spec step (its settings, precision and task kind win over the agent's) or the
        turn's step label; the other arguments are ``Job.turn``'s, to which an unrouted turn goes as is.
        """
        spec_step = step if isinstance(step, StepSpec) else None
        step_id = step.id if isinstance(step, StepSpec) else step
        own = (spec_step.route or spec_step.cascade) if spec_step is not None else None
        options = own or agent.route or agent.cascade
        if options is None:
            return await self.job.turn(
                agent,
                messages,
                step=step_id,
                max_output_tokens=max_output_tokens,
                output_type=output_type,
                deliver=deliver,
                resume=resume,
            )
        precision = spec_step.precision if spec_step and spec_step.precision is not None else agent.precision
        turn = RoutedTurn(
            agent=agent,
            options=options,
            step=step_id,
            name=step_id or f"round {self.job.state.round}: {agent.name}",
            kind=(spec_step.task_kind if spec_step else None) or agent.task_kind or "general",
            need=need_of(precision or "standard"),
            max_output_tokens=max_output_tokens,
            output_type=output_type,
            deliver=deliver,
            resume=resume,
        )
        return await self.turn(turn, messages)

    def adopt(self, prefix: str, records: list[RoutingRecord]) -> None:
        """Add a child job's routing records (a delegation's subtask), named under ``prefix``."""
        for record in records:
            self.records.append(record.model_copy(update={"step": f"{prefix}/{record.step}"}))
            self._lines.append(f"{prefix}/{record.step} ({record.outcome}): {record.summary}")

    def annotate(self, result: JobResult) -> JobResult:
        """``result`` with the routing records of the job's routed turns."""
        if not self.records:
            return result
        return result.model_copy(update={"routing": list(self.records)})

    # ----- one routed turn ---------------------------------------------------------------------

    async def turn(self, turn: RoutedTurn, messages: list[Message]) -> ModelCallResult:
        """Run ``turn`` on the model(s) its routing settings choose; return the output to keep."""
        options, agent, kind, need = turn.options, turn.agent, turn.kind, turn.need
        refs = options_models(options)
        max_out = turn.max_output_tokens or agent.max_output_tokens
        call = CallEstimate(
            kind=kind,
            input_tokens=estimate_request_tokens(
                agent.instructions, [m.counted_text() for m in messages], turn.output_type
            ),
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
        self._show(turn, decision)
        if decision.choice is None:
            self._record(turn, decision, [], "refused")
            nothing_fits = not any(c.affordable for c in decision.candidates)
            reason = StopReason.budget_exhausted if nothing_fits else StopReason.failed
            raise StopJob(reason, f"{_title(turn)}: routing refused: {decision.reason}")

        attempts: list[RoutingAttempt] = []
        outcomes: list[RoutingOutcome] = []
        while True:
            model = decision.choice
            assert model is not None
            kept = list(messages)
            result = await self._call(turn, model, kept, decision)
            attempt = RoutingAttempt(model=model, call_id=result.call_id, cost_usd=result.cost_usd)
            last = decision.plan.index(model) == len(decision.plan) - 1
            free = all(check.kind in DETERMINISTIC for check in checks)
            # A reply cut short and kept as it is (resume=False) is not judged: it says nothing of the model.
            checked = bool(checks) and result.finish_reason != "cancelled"
            if isinstance(options, CascadeSpec):
                checked = checked and (not last or options.check_final or free)
            if checked:
                verdict, check_cost = await self._check(checks, options.threshold, result, turn, model)
                attempt.passed, attempt.check = verdict.met, verdict.summary()
                attempt.check_cost_usd = check_cost
                outcomes.append(RoutingOutcome(kind=kind, model=model, passed=verdict.met))
                stats.record(kind, model, verdict.met)
            attempts.append(attempt)
            if isinstance(options, RouteSpec) or not checked or attempt.passed:
                break
            decision = self._escalate(decision, options, call, checks, max_out)
            self._show(turn, decision)
            if decision.choice is None:
                break
        messages += kept[len(messages) :]  # what the kept rung's turn added, as a plain turn would
        passed = attempts[-1].passed
        outcome: Outcome = "unchecked" if passed is None else "passed" if passed else "failed"
        self._record(turn, decision, attempts, outcome)
        if options.learn and outcomes:
            await self._learn(f"{self.job.job_id}/{turn.name}/{result.call_id}", outcomes)
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
        self, turn: RoutedTurn, ref: str, messages: list[Message], decision: RoutingDecision
    ) -> ModelCallResult:
        """One rung's call, a turn like any other (preempted, it goes on on the same model)."""
        note = {
            "role": "call",
            "step": turn.name,
            "rung": decision.plan.index(ref) if ref in decision.plan else 0,
            "summary": decision.summary(),
            "decision": decision.model_dump(mode="json"),
        }
        routed = turn.agent.model_copy(update={"model": ref})
        return await self.job.turn(
            routed,
            messages,
            step=turn.step,
            max_output_tokens=turn.max_output_tokens,
            output_type=turn.output_type,
            deliver=turn.deliver,
            resume=turn.resume,
            note=note,
        )

    async def _check(
        self, checks: list[GoalCheck], threshold: float, result: ModelCallResult, turn: RoutedTurn, model: str
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
                step=turn.name,
                summary=f"check {check.value} of {_title(turn)} on {model}",
                note={"role": "check", "step": turn.name, "for_call": result.call_id, "model": model},
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

    def _show(self, turn: RoutedTurn, decision: RoutingDecision) -> None:
        line = f"{_title(turn)}: {decision.summary()}"
        self.job.state.detail = line
        workflow.set_current_details(line)

    def _record(
        self, turn: RoutedTurn, decision: RoutingDecision, attempts: list[RoutingAttempt], outcome: Outcome
    ) -> None:
        self.records.append(
            RoutingRecord(
                step=turn.name,
                kind=decision.kind,
                summary=decision.summary(),
                decision=decision.model_dump(mode="json"),
                attempts=attempts,
                outcome=outcome,
            )
        )
        self._lines.append(f"{_title(turn)} ({outcome}): {decision.summary()}")
        workflow.set_current_details("\n".join(self._lines))


def _title(turn: RoutedTurn) -> str:
    """How status lines and errors name a routed turn: ``step <id>``, or ``round N: <agent>``."""
    return f"step {turn.step}" if turn.step is not None else turn.name


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
