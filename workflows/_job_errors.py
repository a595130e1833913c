"""The exceptions of the job kernel: how a mode ends a job, and how a control refuses bad input."""

from __future__ import annotations

import functools
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.jobs import StopReason

Validator = TypeVar("Validator", bound=Callable[..., None])

REFUSED = "InvalidRequest"
"""The error type of an update refused by its validator."""


class StopJob(Exception):
    """Raised inside a mode's loop to end the job now with a stop reason."""

    def __init__(self, reason: StopReason, explanation: str) -> None:
        super().__init__(explanation)
        self.reason = reason
        self.explanation = explanation


class CallFailed(StopJob):
    """A model call failed for good (after its retries): ends the job ``failed`` unless caught.

    Raised by the turn after the call's known usage (re-asks included) was charged and recorded;
    ``error_type`` is the activity error's type (``StructuredOutputInvalid``, ``BadRequest``...),
    ``cost_usd`` what the failed call was charged. A check catches it to score a judge that could
    not answer as failed instead of ending the job.
    """

    def __init__(self, explanation: str, *, error_type: str, message: str, cost_usd: Decimal) -> None:
        super().__init__(StopReason.failed, explanation)
        self.error_type = error_type
        self.message = message
        self.cost_usd = cost_usd


def refusal(validator: Validator) -> Validator:
    """An update validator whose ``ValueError`` reaches the caller as a non-retryable refusal.

    Bad input stays bad: the caller sees an ``ApplicationError`` of type ``InvalidRequest`` with
    the validator's message and ``non_retryable`` set, instead of a retryable ``ValueError``.
    Nothing is written to history either way.
    """

    @functools.wraps(validator)
    def refusing(*args: Any, **kwargs: Any) -> None:
        try:
            validator(*args, **kwargs)
        except ValueError as error:
            raise ApplicationError(str(error), type=REFUSED, non_retryable=True) from None

    return refusing  # type: ignore[return-value]
