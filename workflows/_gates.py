"""Approval gates: points where a job waits for a person (``approve`` / ``reject`` updates).

``JobWorkflow`` calls ``before_step`` before each step or round, ``after_charge`` after each
charge, and ``before_final`` before releasing the final answer. With no gates declared these return
at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from harness.controls import GateDecision
    from harness.spec import JobSpec

if TYPE_CHECKING:
    from workflows._job import JobWorkflow


class Gates:
    """The job's approval gates and their decisions."""

    def __init__(self, job: JobWorkflow, spec: JobSpec) -> None:
        self.job = job
        self.spec = spec

    async def before_step(self, step: str) -> None:
        """Wait at a gate declared before ``step``, if any."""

    async def after_charge(self) -> None:
        """Wait at a spend gate whose amount was just crossed, if any."""

    async def before_final(self, output: str) -> None:
        """Wait at the final-answer gate, if declared."""

    def decide(self, decision: GateDecision, approved: bool) -> str:
        """Record a person's decision on a pending gate (the ``approve`` / ``reject`` updates)."""
        raise ValueError(f"no gate {decision.gate!r} is pending")

    def validate(self, decision: GateDecision) -> None:
        """Refuse a decision on a gate that is not pending; nothing is written to history."""
        raise ValueError(f"no gate {decision.gate!r} is pending")

    def pending(self) -> list[str]:
        """Names of gates waiting for a decision."""
        return []
