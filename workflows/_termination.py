"""Semantic termination for looping modes: goal checks, convergence, expected value.

After each round a mode calls ``after_round``: the goal's checks run (deterministic ones here in
the workflow, judges as charged turns, registered functions as an activity; see ``_checks``), the
convergence monitor sees the round's output and score, and a ``StopJob`` is raised with the reason and its
evidence when the job should end. The job's output is the best round's, not the last one's.
"""

from __future__ import annotations

from decimal import Decimal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.jobs import StopReason
    from contracts.spec import GoalCheck, JobSpec
    from contracts.state import TerminationCarry
    from policies.convergence import ConvergenceConfig, ConvergenceMonitor
    from policies.goals import (
        CheckOutcome,
        GoalVerdict,
        combine,
    )

from workflows._checks import run_check
from workflows._job_errors import StopJob
from workflows._port import Job


class Termination:
    """Goal and convergence bookkeeping for one job (state lives in the workflow instance)."""

    def __init__(self, job: Job, spec: JobSpec) -> None:
        self.job = job
        self.spec = spec
        self.output_agent = spec.chat.output_agent or spec.agents[0].name
        self.latest: dict[str, str] = {}
        self.round_texts: list[tuple[str, str]] = []
        self.last_verdict: GoalVerdict | None = None
        self.cost_at_round_start = Decimal(0)
        convergence = spec.termination.convergence
        self.monitor: ConvergenceMonitor | None = None
        if convergence is not None:
            self.monitor = ConvergenceMonitor(
                config=ConvergenceConfig(
                    plateau_k=convergence.plateau_rounds,
                    epsilon=convergence.epsilon,
                    similarity_threshold=convergence.similarity,
                    value_per_point_usd=convergence.value_per_point_usd,
                )
            )

    def snapshot(self) -> TerminationCarry:
        """The bookkeeping so far (outputs, verdict, convergence, best output) for the next run."""
        return TerminationCarry(
            latest=dict(self.latest),
            round_texts=list(self.round_texts),
            last_verdict=self.last_verdict,
            cost_at_round_start=self.cost_at_round_start,
            monitor=self.monitor.model_copy(deep=True) if self.monitor is not None else None,
        )

    def restore(self, carry: TerminationCarry) -> None:
        """Take over a previous run's bookkeeping."""
        self.latest = dict(carry.latest)
        self.round_texts = list(carry.round_texts)
        self.last_verdict = carry.last_verdict
        self.cost_at_round_start = carry.cost_at_round_start
        if carry.monitor is not None:
            self.monitor = carry.monitor

    def record_output(self, agent: str, text: str) -> None:
        """Note one turn's output."""
        self.latest[agent] = text
        self.round_texts.append((agent, text))

    def outputs(self) -> dict[str, str]:
        """Each agent's latest output."""
        return dict(self.latest)

    def best_output(self) -> str:
        """The best round's output when scores exist, else the output agent's latest."""
        if self.monitor is not None and self.monitor.best_output is not None:
            return self.monitor.best_output
        return self.latest.get(self.output_agent, "")

    async def after_round(self) -> None:
        """Check the goal, then convergence; raise ``StopJob`` when the job should end."""
        output = self.latest.get(self.output_agent, "")
        critique = "\n".join(text for agent, text in self.round_texts if agent != self.output_agent) or None
        self.round_texts = []
        verdict = await self.evaluate_goal(output)
        round_cost = self.job.totals.cost_usd - self.cost_at_round_start
        self.cost_at_round_start = self.job.totals.cost_usd
        score = verdict.score if verdict is not None else None
        stop = None
        if self.monitor is not None:
            stop = self.monitor.observe(output, score=score, critique=critique, cost_usd=round_cost)
        if verdict is not None and verdict.met:
            self.job.evidence = {"goal": verdict.model_dump(mode="json"), **self._savings()}
            raise StopJob(StopReason.goal_met, f"goal met: {verdict.summary()}")
        if stop is not None:
            savings = self._savings()
            self.job.evidence = {**stop.evidence.model_dump(mode="json"), **savings}
            saved = (
                f"; stopped after {savings['rounds_run']} of {savings['max_rounds']} rounds, saving about "
                f"{savings['tokens_saved_estimate']} tokens (${savings['usd_saved_estimate']})"
            )
            raise StopJob(StopReason(stop.reason), self._explain(stop.explanation) + saved)

    def _savings(self) -> dict[str, int | str]:
        """What stopping now saves against running every allowed round, at this job's average pace."""
        rounds_run = max(self.job.round, 1)
        left = max(self.spec.termination.max_rounds - rounds_run, 0)
        tokens = self.job.totals.usage.total_tokens
        usd = self.job.totals.cost_usd
        return {
            "rounds_run": rounds_run,
            "max_rounds": self.spec.termination.max_rounds,
            "tokens_saved_estimate": tokens * left // rounds_run,
            "usd_saved_estimate": f"{usd * left / rounds_run:.6f}",
        }

    def _explain(self, explanation: str) -> str:
        if self.monitor is None or self.monitor.best_index is None:
            return explanation
        return f"{explanation}; returned the best round ({self.monitor.best_index + 1}), not the last"

    async def evaluate_goal(self, output: str) -> GoalVerdict | None:
        """Run every check of the goal on the current outputs; None when no goal is declared."""
        goal = self.spec.goal
        if goal is None or not goal.checks:
            return None
        outcomes = [
            await self._check(check, self.latest.get(check.agent or self.output_agent, output))
            for check in goal.checks
        ]
        verdict = combine(outcomes, goal.rule, goal.threshold)
        self.last_verdict = verdict
        self.job.detail = f"round {self.job.round}: goal {verdict.summary()}"
        return verdict

    async def _check(self, check: GoalCheck, text: str) -> CheckOutcome:
        goal = self.spec.goal
        outcome, _ = await run_check(
            self.job,
            check,
            text,
            threshold=goal.threshold if goal is not None else 0.8,
            rubric=check.rubric or (goal.description if goal is not None else ""),
            step="judge",
            summary=f"check {check.value}",
        )
        return outcome
