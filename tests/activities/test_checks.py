"""The built-in programmatic goal checks a worker registers by default, and the check activity."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.checks import DEFAULT_CHECKS, CheckActivities, CheckRegistry
from policies.goals import RunCheckRequest


def test_builtin_checks() -> None:
    """The built-in checks catch placeholders and cut-off text."""
    assert DEFAULT_CHECKS.get("no_placeholders")("A finished note.") is True
    assert DEFAULT_CHECKS.get("no_placeholders")("Intro TODO later") is False
    assert DEFAULT_CHECKS.get("sentences_end")("It ends.") is True
    assert DEFAULT_CHECKS.get("sentences_end")("It was cut") is False


async def test_a_check_that_raises_is_a_non_retryable_error_naming_it() -> None:
    """A registered check that raises (or returns no number) fails its activity for good, type
    CheckRaised, naming the check and the exception: retrying would run the same code on the same text."""
    registry = CheckRegistry()
    registry.register("divides")(lambda text: 1 / len(text) > 0)
    registry.register("wordy")(lambda text: text)  # type: ignore[arg-type, return-value]
    activities = CheckActivities(registry)
    env = ActivityEnvironment()
    assert (await env.run(activities.run_check, RunCheckRequest(name="divides", text="x"))).passed
    for name, raised in (("divides", "ZeroDivisionError"), ("wordy", "ValueError")):
        with pytest.raises(ApplicationError) as caught:
            await env.run(activities.run_check, RunCheckRequest(name=name, text=""))
        error = caught.value
        assert error.type == "CheckRaised" and error.non_retryable
        assert f"check {name!r} raised {raised}" in error.message
