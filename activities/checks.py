"""The programmatic goal-check activity: runs a named check function from the worker's registry."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from harness.checks import DEFAULT_CHECKS, CheckRegistry
from policies.goals import CheckOutcome, RunCheckRequest

RUN_CHECK_ACTIVITY = "harness.run_check"


class CheckActivities:
    """Holds the registry the worker was given (the default one unless a test passes its own)."""

    def __init__(self, registry: CheckRegistry | None = None) -> None:
        self.registry = registry or DEFAULT_CHECKS

    @activity.defn(name=RUN_CHECK_ACTIVITY)
    async def run_check(self, request: RunCheckRequest) -> CheckOutcome:
        """Run the check; an unknown name is the spec's fault, so it is not retried."""
        try:
            function = self.registry.get(request.name)
        except KeyError as error:
            raise ApplicationError(str(error.args[0]), type="UnknownCheck", non_retryable=True) from None
        value = function(request.text)
        score = float(value)
        if not 0.0 <= score <= 1.0:
            raise ApplicationError(
                f"check {request.name!r} returned {value!r}; a check returns a bool or a score in [0, 1]",
                type="BadCheckResult",
                non_retryable=True,
            )
        return CheckOutcome(
            kind="function",
            score=score,
            passed=score >= 1.0 if isinstance(value, bool) else score >= 0.5,
            detail=request.name,
        )
