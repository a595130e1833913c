"""Checks of an output, one home for goal checks and routing checks.

A check is deterministic (``contains``, ``regex``, ``json``, ...: evaluated here, in the workflow,
free), a ``judge`` (a model scores the text against a rubric: a charged turn like any other), or a
registered Python ``function`` (run by the ``harness.run_check`` activity on the worker).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from contracts.jobs import StopReason
    from contracts.models import Message
    from contracts.spec import AgentSpec, GoalCheck
    from policies.goals import DETERMINISTIC, CheckOutcome, RunCheckRequest, deterministic_check
from workflows._activities import RUN_CHECK
from workflows._job_errors import CallFailed, StopJob
from workflows._port import Job

JUDGE_PROMPT = (
    "Score the text below against the rubric, from 0 (useless) to 1 (perfect). "
    'Answer with JSON only: {{"score": <number>, "reason": "<one sentence>"}}.\n\n'
    "Rubric: {rubric}\n\nText:\n{text}"
)
JUDGE_INSTRUCTIONS = "You are a strict, fair judge."
JUDGE_MAX_OUTPUT = 200


def judge_agent(check: GoalCheck) -> AgentSpec:
    """The agent a ``judge`` check calls."""
    return AgentSpec(
        name="judge",
        model=check.model or "",
        instructions=JUDGE_INSTRUCTIONS,
        max_output_tokens=JUDGE_MAX_OUTPUT,
    )


def judge_prompt(rubric: str, text: str) -> str:
    """What a judge is asked about ``text``."""
    return JUDGE_PROMPT.format(rubric=rubric, text=text)


async def run_check(
    job: Job,
    check: GoalCheck,
    text: str,
    *,
    threshold: float,
    rubric: str,
    step: str,
    summary: str,
    note: dict[str, Any] | None = None,
) -> tuple[CheckOutcome, Decimal]:
    """Check ``text``; returns the outcome (with the check's weight) and what the check cost.

    A judge passes at ``threshold`` and is a turn of ``job`` (step ``step``, record ``note``) that
    takes no pending messages; a function check runs as an activity with ``summary``.

    A check that cannot be evaluated (a judge whose reply is still invalid after its re-asks, a
    function check that raises or returns no score) is an error outcome: score 0, not passed, its
    cost counted, noted on the job; with ``on_error: fail`` it ends the job ``failed`` instead.
    """
    if check.kind in DETERMINISTIC:
        return deterministic_check(check.kind, check.value, text, check.weight), Decimal(0)
    if check.kind == "judge":
        try:
            reply = await job.turn(
                judge_agent(check),
                [Message(role="user", content=judge_prompt(rubric, text))],
                step=step,
                output_type="judge_score",
                deliver=False,
                note=note,
            )
        except CallFailed as failed:
            if failed.error_type != "StructuredOutputInvalid":
                raise  # the judge's model or provider is wrong or down: the job cannot go on
            why = f"judge {check.model} could not answer: {failed.error_type}: {failed.message}"
            return _unevaluable(job, check, why, f"step {step}"), failed.cost_usd
        parsed = reply.parsed if isinstance(reply.parsed, dict) else {}
        score = float(parsed.get("score", 0.0))
        outcome = CheckOutcome(
            kind="judge",
            score=score,
            passed=score >= threshold,
            weight=check.weight,
            detail=str(parsed.get("reason", ""))[:200],
        )
        return outcome, reply.cost_usd or Decimal(0)
    try:
        result = await RUN_CHECK.run(
            RunCheckRequest(name=str(check.value), text=text), summary=summary, priority=job.task_priority
        )
    except ActivityError as error:
        cause = error.cause
        if isinstance(cause, CancelledError):
            raise
        kind = cause.type if isinstance(cause, ApplicationError) else type(cause).__name__
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        if kind == "UnknownCheck":
            # Not registered on this worker: a configuration error every round would hit.
            raise StopJob(StopReason.failed, f"check {check.value!r}: {kind}: {message}") from None
        why = f"function check {check.value!r} could not be evaluated: {kind}: {message}"
        return _unevaluable(job, check, why, summary), Decimal(0)
    return result.model_copy(update={"weight": check.weight}), Decimal(0)


def _unevaluable(job: Job, check: GoalCheck, why: str, where: str) -> CheckOutcome:
    """The outcome of a check that could not be evaluated: score 0 (or the job ends, ``on_error: fail``)."""
    if check.on_error == "fail":
        raise StopJob(StopReason.failed, f"{why} ({where}; the check says on_error: fail)")
    job.note_check_error(f"{why} ({where})")
    return CheckOutcome(
        kind=check.kind, score=0.0, passed=False, weight=check.weight, detail=why[:200], error=why[:300]
    )
