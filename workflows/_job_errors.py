"""The exceptions of the job kernel: how a mode ends a job, and how a control refuses bad input."""

from __future__ import annotations

import functools
from collections.abc import Callable
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
