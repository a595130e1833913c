"""The exception a mode's loop raises to end the job with a stop reason."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.jobs import StopReason


class StopJob(Exception):
    """Raised inside a mode's loop to end the job now with a stop reason."""

    def __init__(self, reason: StopReason, explanation: str) -> None:
        super().__init__(explanation)
        self.reason = reason
        self.explanation = explanation
