"""Semantic termination for looping modes: goal checks, convergence, expected value.

After each round a mode calls ``after_round``: the goal's checks run (deterministic ones here in
the workflow, judges as charged turns, registered functions as an activity; see ``_checks``), the
convergence monitor sees the round's output and score, and a ``StopJob`` is raised with the reason and its
evidence when the job should end. The job's output is the best round's, not the last one's.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.jobs import StopReason
    from contracts.spec import GoalCheck, JobSpec
    from contracts.state import TerminationState
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

    def __init__(self, job: Job, spec: JobSpec, state: TerminationState) -> None:
        self.job = job
        self.spec = spec
        self.output_agent = spec.chat.output_agent or spec.agents[0].name
        self.state = state  # part of the chat's state: continue-as-new carries it
        convergence = spec.termination.convergence
        if convergence is not None and state.monitor is None:
            state.monitor = ConvergenceMonitor(
                config=ConvergenceConfig(
                    plateau_k=convergence.plateau_rounds,
                    epsilon=convergence.epsilon,
                    similarity_threshold=convergence.similarity,
                    value_per_point_usd=convergence.value_per_point_usd,
                )
            )

    def record_output(self, agent: str, text: str) -> None:
        """Note one turn's output."""
        self.state.latest[agent] = text
        self.state.round_texts.append((agent, text))

    def outputs(self) -> dict[str, str]:
        """Each agent's latest output."""
        return dict(self.state.latest)

    def best_output(self) -> str:
        """The best round's output when scores exist, else the output agent's latest."""
        if self.state.monitor is not None and self.state.monitor.best_output is not None:
            return self.state.monitor.best_output
        return self.state.latest.get(self.output_agent, "")

    async def after_round(self) -> None:
        """Check the goal, then convergence; raise ``StopJob`` when the job should end."""
        output = self.state.latest.get(self.output_agent, "")
        critique = (
            "\n".join(text for agent, text in self.state.round_texts if agent != self.output_agent) or None
        )
        self.state.round_texts = []
        verdict = await self.evaluate_goal(output)
        round_cost = self.job.totals.cost_usd - self.state.cost_at_round_start
        self.state.cost_at_round_start = self.job.totals.cost_usd
        score = verdict.score if verdict is not None else None
        stop = None
        if self.state.monitor is not None:
            stop = self.state.monitor.observe(output, score=score, critique=critique, cost_usd=round_cost)
        if verdict is not None and verdict.met:
            self.job.state.evidence = {"goal": verdict.model_dump(mode="json"), **self._savings()}
            raise StopJob(StopReason.goal_met, f"goal met: {verdict.summary()}")
        if stop is not None:
            savings = self._savings()
            self.job.state.evidence = {**stop.evidence.model_dump(mode="json"), **savings}
            saved = (
                f"; stopped after {savings['rounds_run']} of {savings['max_rounds']} rounds, saving about "
                f"{savings['tokens_saved_estimate']} tokens (${savings['usd_saved_estimate']})"
            )
            raise StopJob(StopReason(stop.reason), self._explain(stop.explanation) + saved)

    def _savings(self) -> dict[str, int | str]:
        """What stopping now saves against running every allowed round, at this job's average pace."""
        rounds_run = max(self.job.state.round, 1)
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
        if self.state.monitor is None or self.state.monitor.best_index is None:
            return explanation
        return f"{explanation}; returned the best round ({self.state.monitor.best_index + 1}), not the last"

    async def evaluate_goal(self, output: str) -> GoalVerdict | None:
        """Run every check of the goal on the current outputs; None when no goal is declared."""
        goal = self.spec.goal
        if goal is None or not goal.checks:
            return None
        outcomes = [
            await self._check(check, self.state.latest.get(check.agent or self.output_agent, output))
            for check in goal.checks
        ]
        verdict = combine(outcomes, goal.rule, goal.threshold)
        self.state.last_verdict = verdict
        if any(outcome.error for outcome in outcomes):
            # A check could not be evaluated and scored 0: the evidence shows the verdict it made.
            self.job.state.evidence = {**self.job.state.evidence, "goal": verdict.model_dump(mode="json")}
        self.job.state.detail = f"round {self.job.state.round}: goal {verdict.summary()}"
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
